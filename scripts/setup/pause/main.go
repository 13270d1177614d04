// Command pause is the pod sandbox ("pause") process of the suite's single-node cluster.
//
// It holds the pod's namespaces open by doing nothing: it sleeps until SIGTERM or
// SIGINT and then exits 0, and, as PID 1 of a shared PID namespace, it reaps every
// orphaned child (SIGCHLD -> wait4 until none is left) so no zombie outlives its
// container. It is built static (CGO_ENABLED=0) so the image holds this one file and
// nothing else; no registry or base image is needed (docs/cluster-tests.md).
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func reap() {
	for {
		var status syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "-v" || os.Args[1] == "--version") {
		fmt.Println("tidegate-pause")
		return
	}
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT, syscall.SIGCHLD)
	for sig := range signals {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			os.Exit(0)
		}
	}
}
