// Runs SQL cases on Apache Flink 2.3.0 and writes their golden files: what sluice's `sluice sql`
// must produce for the same script (tests/e2e/sql.rs compares).
//
//   java -cp <flink jars>:<classes> SqlGolden CASES_DIR DATA_DIR CASE.sql...
//
// Per case CASE.sql: ${DATA} is replaced by DATA_DIR; statements are split at ';' outside quotes
// and comments; `SET 'k' = 'v'` sets a table option; every other statement but the last runs with
// executeSql; the last must be a query, whose rows are collected. Settings as the issue fixes
// them: parallelism 1, table.local-time-zone UTC, pipeline.auto-watermark-interval 0 (a watermark
// per event). CASE.golden gets the result schema and every row with its kind:
//
//   -- columns: order_id STRING, amount_usd DECIMAL(13, 4)
//   +I ["o-1","151.2720"]
//
// Values are JSON: STRING as a string, DECIMAL as a string of its plain digits (its scale kept),
// integers as numbers, DOUBLE/FLOAT as numbers (Java's shortest form; NaN/Infinity as strings),
// BOOLEAN, NULL as null, TIMESTAMP/TIMESTAMP_LTZ as strings 'yyyy-MM-dd HH:mm:ss.SSS' (UTC).
// A case whose query Flink refuses gets `-- error: <Flink's message, first line>` instead.

import java.io.IOException;
import java.math.BigDecimal;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Instant;
import java.time.LocalDateTime;
import java.time.ZoneOffset;
import java.time.format.DateTimeFormatter;
import java.util.ArrayList;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import org.apache.flink.configuration.Configuration;
import org.apache.flink.streaming.api.environment.StreamExecutionEnvironment;
import org.apache.flink.table.api.EnvironmentSettings;
import org.apache.flink.table.api.TableResult;
import org.apache.flink.table.api.bridge.java.StreamTableEnvironment;
import org.apache.flink.table.catalog.Column;
import org.apache.flink.types.Row;
import org.apache.flink.util.CloseableIterator;

public final class SqlGolden {
    private static final Pattern SET = Pattern.compile(
            "(?is)^SET\\s+'([^']*)'\\s*=\\s*'([^']*)'\\s*$");
    private static final DateTimeFormatter TS = DateTimeFormatter.ofPattern("yyyy-MM-dd HH:mm:ss.SSS");

    public static void main(String[] args) throws Exception {
        Path cases = Path.of(args[0]);
        Path data = Path.of(args[1]).toAbsolutePath();
        for (int i = 2; i < args.length; i++) {
            Path file = cases.resolve(args[i]);
            String golden = run(file, data);
            Path out = cases.resolve(args[i].replaceAll("\\.sql$", ".golden"));
            Files.writeString(out, golden, StandardCharsets.UTF_8);
            System.err.println("golden: " + out);
        }
    }

    static String run(Path file, Path data) throws IOException {
        String text = Files.readString(file, StandardCharsets.UTF_8).replace("${DATA}", data.toString());
        List<String> statements = split(text);
        Configuration conf = new Configuration();
        conf.setString("pipeline.auto-watermark-interval", "0");
        StreamExecutionEnvironment env = StreamExecutionEnvironment.getExecutionEnvironment(conf);
        env.setParallelism(1);
        StreamTableEnvironment t = StreamTableEnvironment.create(env, EnvironmentSettings.inStreamingMode());
        t.getConfig().setLocalTimeZone(ZoneOffset.UTC);
        StringBuilder out = new StringBuilder();
        try {
            for (int i = 0; i < statements.size() - 1; i++) {
                String s = statements.get(i);
                Matcher m = SET.matcher(s);
                if (m.matches()) {
                    t.getConfig().getConfiguration().setString(m.group(1), m.group(2));
                } else {
                    t.executeSql(s);
                }
            }
            TableResult r = t.executeSql(statements.get(statements.size() - 1));
            List<String> cols = new ArrayList<>();
            List<Column> columns = r.getResolvedSchema().getColumns();
            for (Column c : columns) {
                cols.add(c.getName() + " " + c.getDataType().getLogicalType().asSummaryString());
            }
            out.append("-- columns: ").append(String.join(", ", cols)).append('\n');
            try (CloseableIterator<Row> it = r.collect()) {
                while (it.hasNext()) {
                    Row row = it.next();
                    StringBuilder line = new StringBuilder(row.getKind().shortString()).append(" [");
                    for (int c = 0; c < row.getArity(); c++) {
                        if (c > 0) {
                            line.append(',');
                        }
                        line.append(json(row.getField(c)));
                    }
                    out.append(line).append("]\n");
                }
            }
        } catch (Exception e) {
            Throwable root = e;
            while (root.getCause() != null && root.getMessage() == null) {
                root = root.getCause();
            }
            String message = String.valueOf(root.getMessage()).split("\n")[0];
            out.setLength(0);
            out.append("-- error: ").append(message).append('\n');
        }
        return out.toString();
    }

    static String json(Object v) {
        if (v == null) {
            return "null";
        }
        if (v instanceof String s) {
            return quote(s);
        }
        if (v instanceof BigDecimal d) {
            return quote(d.toPlainString());
        }
        if (v instanceof Double || v instanceof Float) {
            double d = ((Number) v).doubleValue();
            return Double.isFinite(d) ? v.toString() : quote(v.toString());
        }
        if (v instanceof Number || v instanceof Boolean) {
            return v.toString();
        }
        if (v instanceof LocalDateTime ts) {
            return quote(TS.format(ts));
        }
        if (v instanceof Instant i) {
            return quote(TS.format(LocalDateTime.ofInstant(i, ZoneOffset.UTC)));
        }
        return quote(v.toString());
    }

    static String quote(String s) {
        StringBuilder b = new StringBuilder("\"");
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> b.append("\\\"");
                case '\\' -> b.append("\\\\");
                case '\n' -> b.append("\\n");
                case '\t' -> b.append("\\t");
                case '\r' -> b.append("\\r");
                default -> {
                    if (c < 0x20) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        return b.append('"').toString();
    }

    /** Splits at ';' outside '...' and `...` quotes and -- and block comments. */
    static List<String> split(String text) {
        List<String> out = new ArrayList<>();
        StringBuilder cur = new StringBuilder();
        int n = text.length();
        for (int i = 0; i < n; i++) {
            char c = text.charAt(i);
            char next = i + 1 < n ? text.charAt(i + 1) : '\0';
            if (c == '-' && next == '-') {
                while (i < n && text.charAt(i) != '\n') {
                    i++;
                }
                cur.append('\n');
            } else if (c == '/' && next == '*') {
                int end = text.indexOf("*/", i + 2);
                i = end < 0 ? n : end + 1;
                cur.append(' ');
            } else if (c == '\'' || c == '`') {
                cur.append(c);
                for (i++; i < n; i++) {
                    char d = text.charAt(i);
                    cur.append(d);
                    if (d == c) {
                        if (i + 1 < n && text.charAt(i + 1) == c) {
                            cur.append(c);
                            i++;
                        } else {
                            break;
                        }
                    }
                }
            } else if (c == ';') {
                String s = cur.toString().trim();
                if (!s.isEmpty()) {
                    out.add(s);
                }
                cur.setLength(0);
            } else {
                cur.append(c);
            }
        }
        String s = cur.toString().trim();
        if (!s.isEmpty()) {
            out.add(s);
        }
        return out;
    }
}
