package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
)

// serviceAccountIssuer is the issuer of the service-account tokens (as in a cluster).
const serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"

// controlPlane is the running components; each one's end arrives on its channel.
type controlPlane struct {
	server                                  string
	cancel                                  context.CancelFunc
	apiserver, controllerManager, scheduler <-chan error
}

// startControlPlane issues the credentials, starts the kube-apiserver, waits for /readyz, starts
// the controller manager, the scheduler, the fake nodes and kwok, waits for the nodes to be
// Ready and writes DIR/kubeconfig last: its presence means ready. On an error the returned
// control plane (possibly partly started) must still be shut down.
func startControlPlane(ctx context.Context, f serveFlags, listener net.Listener, etcdURL string) (*controlPlane, error) {
	ctx, cancel := context.WithCancel(ctx)
	cp := &controlPlane{server: "https://" + listener.Addr().String(), cancel: cancel}
	creds, err := issueCredentials(filepath.Join(f.dir, "pki"), cp.server)
	if err != nil {
		return cp, err
	}
	cp.apiserver, err = startAPIServer(ctx, apiserverConfig{
		listener: listener, etcdURL: etcdURL, ca: creds.pki.caPath(), serving: creds.serving,
		saKey: creds.saKey, saPub: creds.saPub, serviceAccount: serviceAccountIssuer,
	})
	if err != nil {
		return cp, err
	}
	client, err := newClient(creds.kwok)
	if err != nil {
		return cp, err
	}
	if err := waitReadyz(ctx, client, cp.apiserver); err != nil {
		return cp, err
	}
	if cp.controllerManager, err = startControllerManager(ctx, creds.controllerManager, creds.pki.caPath(), creds.saKey); err != nil {
		return cp, err
	}
	if cp.scheduler, err = startScheduler(ctx, creds.scheduler); err != nil {
		return cp, err
	}
	if err := createNodes(ctx, client, f.nodes, f.gpus); err != nil {
		return cp, err
	}
	if err := startKwok(ctx, creds.kwok); err != nil {
		return cp, err
	}
	if err := waitNodesReady(ctx, client, f.nodes); err != nil {
		return cp, err
	}
	return cp, writeFileAtomic(filepath.Join(f.dir, "kubeconfig"), func(path string) error {
		return writeKubeconfig(path, cp.server, creds.pki.caPEM(), creds.admin)
	})
}

// wait returns nil when ctx ends, or an error when a component stops by itself first.
func (cp *controlPlane) wait(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return nil
	case err := <-cp.apiserver:
		return ended("kube-apiserver", err)
	case err := <-cp.controllerManager:
		return ended("kube-controller-manager", err)
	case err := <-cp.scheduler:
		return ended("kube-scheduler", err)
	}
}

func ended(component string, err error) error {
	if err == nil {
		return fmt.Errorf("%s stopped", component)
	}
	return fmt.Errorf("%s stopped: %w", component, err)
}
