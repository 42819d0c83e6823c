package main

import (
	"context"
	"fmt"
	"net"

	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"k8s.io/kubernetes/cmd/kube-apiserver/app/options"
)

// serviceCIDR is the Service cluster-IP range; its first address is the kubernetes Service.
const serviceCIDR = "10.0.0.0/24"

// apiserverConfig is what the kube-apiserver is started with.
type apiserverConfig struct {
	listener       net.Listener
	etcdURL        string
	ca             string
	serving        keyPair
	saKey, saPub   string
	serviceAccount string
}

// apiserverArgs are the kube-apiserver's flags: TLS on 127.0.0.1 with client certificates of
// our CA, RBAC (and Node) authorization, the default admission plugins plus NodeRestriction,
// service-account tokens signed with saKey. No endpoint reconciler: the advertised address is
// loopback, which the kubernetes Service's Endpoints may not hold.
func apiserverArgs(c apiserverConfig) []string {
	return []string{
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--etcd-servers=" + c.etcdURL,
		"--client-ca-file=" + c.ca,
		"--tls-cert-file=" + c.serving.certPath,
		"--tls-private-key-file=" + c.serving.keyPath,
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--allow-privileged=true",
		"--service-cluster-ip-range=" + serviceCIDR,
		"--service-account-issuer=" + c.serviceAccount,
		"--service-account-key-file=" + c.saPub,
		"--service-account-signing-key-file=" + c.saKey,
		"--endpoint-reconciler-type=none",
		"--profiling=false",
	}
}

// startAPIServer runs the kube-apiserver of this release in this process until ctx ends; its
// end (an error, or nil after ctx) arrives on the channel.
func startAPIServer(ctx context.Context, c apiserverConfig) (<-chan error, error) {
	s := options.NewServerRunOptions()
	registry, err := componentRegistry()
	if err != nil {
		return nil, err
	}
	s.GenericServerRunOptions.ComponentGlobalsRegistry = registry
	if err := parseFlags("kube-apiserver", s.Flags().FlagSets, apiserverArgs(c)); err != nil {
		return nil, err
	}
	if err := registry.Set(); err != nil {
		return nil, err
	}
	// The listener was opened by serve, so a port in use is reported before anything starts.
	s.SecureServing.Listener = c.listener
	s.SecureServing.BindPort = c.listener.Addr().(*net.TCPAddr).Port
	completed, err := s.Complete(ctx)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver options: %w", err)
	}
	if errs := completed.Validate(); len(errs) != 0 {
		return nil, fmt.Errorf("kube-apiserver options: %w", utilerrors.NewAggregate(errs))
	}
	done := make(chan error, 1)
	go func() { done <- app.Run(ctx, completed) }()
	return done, nil
}
