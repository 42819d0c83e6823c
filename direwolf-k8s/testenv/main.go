// Command testenv runs a real Kubernetes control plane for direwolf's tests, or acts as kubectl.
//
//	testenv serve --dir DIR [--port N] [--owner-pid PID]   the control plane, in the foreground
//	testenv kubectl ARGS...                                 kubectl (also when called as "kubectl")
//
// scripts/kube-testenv builds it, starts it in the background and stops it; read that script
// first. A failure of serve ends with one line on stderr starting with "kube-testenv: ".
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	if filepath.Base(os.Args[0]) == "kubectl" {
		os.Exit(runKubectl(os.Args[1:]))
	}
	if len(os.Args) < 2 {
		fail("usage: testenv serve --dir DIR [--port N] [--owner-pid PID] | testenv kubectl ARGS...")
	}
	switch os.Args[1] {
	case "serve":
		if err := serve(os.Args[2:]); err != nil {
			fail(err.Error())
		}
	case "kubectl":
		os.Exit(runKubectl(os.Args[2:]))
	default:
		fail(fmt.Sprintf("unknown subcommand %q (serve or kubectl)", os.Args[1]))
	}
}

// fail prints the one-line failure scripts/kube-testenv shows, and exits.
func fail(msg string) {
	fmt.Fprintf(os.Stderr, "kube-testenv: %s\n", msg)
	os.Exit(1)
}
