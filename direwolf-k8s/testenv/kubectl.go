package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"
)

// runKubectl runs kubectl's own command (k8s.io/kubectl, the release this module pins) with
// args, as the kubectl binary would; its exit code.
func runKubectl(args []string) int {
	os.Args = append([]string{"kubectl"}, args...)
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		// Prints the error as kubectl does and exits non-zero.
		util.CheckErr(err)
	}
	return 0
}
