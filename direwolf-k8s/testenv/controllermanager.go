package main

import (
	"context"
	"fmt"
	"strings"

	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// kcmControllers are run by the kube-controller-manager: what the direwolf operator relies on
// (garbage collection, Deployments and ReplicaSets, namespaces and their deletion, service
// accounts and their tokens, the root CA ConfigMap pods mount, EndpointSlices of Services, Pods
// of deleted nodes), node lifecycle (it lifts the not-ready taint new Nodes get once kwok
// reports them Ready, and taints nodes whose Lease kwok stops renewing) and nothing for
// volumes or clouds.
var kcmControllers = []string{
	"garbage-collector-controller",
	"deployment-controller",
	"replicaset-controller",
	"namespace-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"root-ca-certificate-publisher-controller",
	"endpointslice-controller",
	"pod-garbage-collector-controller",
	"clusterrole-aggregation-controller",
	"node-lifecycle-controller",
	"taint-eviction-controller",
}

// startControllerManager runs the kube-controller-manager of this release in this process with
// the controllers above, each under its own service account (as a cluster runs it, so RBAC
// applies to the controllers too), without leader election or a serving port.
func startControllerManager(ctx context.Context, kubeconfig, ca, saKey string) (<-chan error, error) {
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, err
	}
	registry, err := componentRegistry()
	if err != nil {
		return nil, err
	}
	s.ComponentGlobalsRegistry = registry
	all, disabled, aliases := app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()
	sets := s.Flags(all, disabled, aliases)
	args := []string{
		"--kubeconfig=" + kubeconfig,
		"--controllers=" + strings.Join(kcmControllers, ","),
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + saKey,
		"--root-ca-file=" + ca,
		"--leader-elect=false",
		"--secure-port=0",
		"--profiling=false",
	}
	if err := parseFlags("kube-controller-manager", sets.FlagSets, args); err != nil {
		return nil, err
	}
	s.ParsedFlags = &sets
	if err := registry.Set(); err != nil {
		return nil, err
	}
	config, err := s.Config(ctx, all, disabled, aliases)
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, config.Complete()) }()
	return done, nil
}
