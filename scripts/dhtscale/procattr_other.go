//go:build !linux

package main

import "syscall"

// workerProcAttr: without Linux's parent-death signal, a worker ends when
// its stdin closes, which happens when the coordinator exits.
func workerProcAttr() *syscall.SysProcAttr { return nil }
