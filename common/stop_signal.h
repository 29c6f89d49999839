// stop_signal.h — graceful stop on SIGINT / SIGTERM / SIGUSR1 (Slurm's --signal=USR1@T).
// The first signal only sets a flag; the train loop checks it between steps, saves a checkpoint
// and returns. The handler then restores the default action, so a second Ctrl-C ends the process
// at once. Process-wide; install once from the thread that runs the loop.
#pragma once

namespace asc {

void install_stop_signals();
// The signal number received, or 0.
int stop_signal();
const char* signal_name(int sig);

}  // namespace asc
