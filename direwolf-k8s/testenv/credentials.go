package main

import (
	"net"
	"path/filepath"
)

// kubeletStandInGateway is the bridge address of the kubelet stand-in (direwolf-kubelet, default
// --pod-cidr 10.77.0.0/16): its pods reach the API server through a forwarder there, and verify
// this certificate against that IP, as in-cluster clients do with KUBERNETES_SERVICE_HOST.
var kubeletStandInGateway = net.IPv4(10, 77, 0, 1)

// credentials are the certificates and kubeconfigs of the control plane's parts.
type credentials struct {
	pki          *pki
	serving      keyPair
	admin        keyPair
	saKey, saPub string
	// kubeconfig paths of the components (each its own identity, as RBAC's bootstrap roles expect)
	controllerManager, scheduler, kwok string
}

// issueCredentials creates the CA under dir and everything signed by it: the kube-apiserver's
// serving certificate, the service-account signing key, the admin (system:masters) client
// certificate, and kubeconfigs for the controller manager, the scheduler and kwok.
func issueCredentials(dir, server string) (credentials, error) {
	var c credentials
	var err error
	if c.pki, err = newPKI(dir); err != nil {
		return c, err
	}
	if c.serving, err = c.pki.serving("kube-apiserver", net.IPv4(10, 0, 0, 1), kubeletStandInGateway); err != nil {
		return c, err
	}
	if c.saKey, c.saPub, err = c.pki.serviceAccountKey(); err != nil {
		return c, err
	}
	if c.admin, err = c.pki.client("admin", "direwolf-testenv-admin", "system:masters"); err != nil {
		return c, err
	}
	identities := []struct {
		path       *string
		name, user string
		groups     []string
	}{
		{&c.controllerManager, "kube-controller-manager", "system:kube-controller-manager", nil},
		{&c.scheduler, "kube-scheduler", "system:kube-scheduler", nil},
		// kwok plays every node's kubelet: it writes any pod's status and deletes pods.
		{&c.kwok, "kwok", "kwok", []string{"system:masters"}},
	}
	for _, id := range identities {
		kp, err := c.pki.client(id.name, id.user, id.groups...)
		if err != nil {
			return c, err
		}
		*id.path = filepath.Join(dir, id.name+".kubeconfig")
		if err := writeKubeconfig(*id.path, server, c.pki.caPEM(), kp); err != nil {
			return c, err
		}
	}
	return c, nil
}
