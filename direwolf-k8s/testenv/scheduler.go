package main

import (
	"context"
	"fmt"

	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// startScheduler runs the kube-scheduler of this release in this process with its default
// profile, without leader election or a serving port.
func startScheduler(ctx context.Context, kubeconfig string) (<-chan error, error) {
	opts := options.NewOptions()
	registry, err := componentRegistry()
	if err != nil {
		return nil, err
	}
	opts.ComponentGlobalsRegistry = registry
	args := []string{"--kubeconfig=" + kubeconfig, "--leader-elect=false", "--secure-port=0", "--profiling=false"}
	if err := parseFlags("kube-scheduler", opts.Flags.FlagSets, args); err != nil {
		return nil, err
	}
	if err := registry.Set(); err != nil {
		return nil, err
	}
	cc, sched, err := app.Setup(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("kube-scheduler options: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, cc, sched) }()
	return done, nil
}
