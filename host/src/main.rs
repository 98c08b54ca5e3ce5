// Batches are allocated by the task that fills them and freed by the task
// that takes them, on another thread: glibc's malloc makes each such free
// take the producer's arena lock, and the two threads then wait on each
// other (W2 and W5 ran ~18 % faster with mimalloc, which frees across
// threads without a shared lock). `no_thp`: transparent huge pages made
// its peak RSS 2.5× glibc's on W2; without them it is ~1.6×.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice_host::cli::main()
}
