//go:build unix

package server

import (
	"syscall"
	"time"
)

// processCPU is the CPU time (user and system) this process has used so
// far: on a machine shared with other jobs, CPU per operation moves much
// less than operations per second.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
