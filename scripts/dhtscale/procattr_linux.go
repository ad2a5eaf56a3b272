package main

import "syscall"

// workerProcAttr has the kernel send a worker SIGTERM when the
// coordinator dies (even by SIGKILL), so that no worker outlives a run;
// the worker then removes its directory and exits (worker.go). The signal
// is tied to the thread that started the child, and the Go runtime does
// not end its threads while the program runs (it would only for a
// goroutine that exits locked to its thread, which none here does).
func workerProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
