package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki is the control plane's certificate authority; every certificate and key lives under dir.
// Keys are files of mode 0600 and are never logged.
type pki struct {
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// keyPair is one issued certificate and its key, PEM encoded, and where both were written.
type keyPair struct {
	certPEM, keyPEM   []byte
	certPath, keyPath string
}

const certLifetime = 30 * 24 * time.Hour

// newPKI creates a fresh CA under dir (ca.crt).
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := template(pkix.Name{CommonName: "direwolf-testenv-ca"})
	tmpl.IsCA = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &pki{dir: dir, cert: cert, key: key}
	return p, os.WriteFile(p.caPath(), p.caPEM(), 0o644)
}

func (p *pki) caPath() string { return filepath.Join(p.dir, "ca.crt") }

func (p *pki) caPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.cert.Raw})
}

// serving issues the kube-apiserver's serving certificate: 127.0.0.1, ips (the first service IP
// and the addresses pods reach it at) and the in-cluster names of the kubernetes Service.
func (p *pki) serving(name string, ips ...net.IP) (keyPair, error) {
	tmpl := template(pkix.Name{CommonName: name})
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	tmpl.IPAddresses = append([]net.IP{net.IPv4(127, 0, 0, 1)}, ips...)
	tmpl.DNSNames = []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local"}
	return p.issue(name, tmpl)
}

// client issues a client certificate for user cn in groups orgs (RBAC subjects).
func (p *pki) client(name, cn string, orgs ...string) (keyPair, error) {
	tmpl := template(pkix.Name{CommonName: cn, Organization: orgs})
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	return p.issue(name, tmpl)
}

func (p *pki) issue(name string, tmpl *x509.Certificate) (keyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return keyPair{}, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		return keyPair{}, fmt.Errorf("issue %s certificate: %w", name, err)
	}
	keyPEM, err := privatePEM(key)
	if err != nil {
		return keyPair{}, err
	}
	kp := keyPair{
		certPEM:  pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:   keyPEM,
		certPath: filepath.Join(p.dir, name+".crt"),
		keyPath:  filepath.Join(p.dir, name+".key"),
	}
	if err := os.WriteFile(kp.certPath, kp.certPEM, 0o644); err != nil {
		return keyPair{}, err
	}
	return kp, os.WriteFile(kp.keyPath, kp.keyPEM, 0o600)
}

// serviceAccountKey writes the key pair that signs service-account tokens: sa.key (used by the
// kube-apiserver to issue tokens and by the token controller) and sa.pub (to verify them).
func (p *pki) serviceAccountKey() (private, public string, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	keyPEM, err := privatePEM(key)
	if err != nil {
		return "", "", err
	}
	pub, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return "", "", err
	}
	private, public = filepath.Join(p.dir, "sa.key"), filepath.Join(p.dir, "sa.pub")
	if err := os.WriteFile(private, keyPEM, 0o600); err != nil {
		return "", "", err
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
	return private, public, os.WriteFile(public, pubPEM, 0o644)
}

func privatePEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func template(subject pkix.Name) *x509.Certificate {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(fmt.Sprintf("the system random source failed: %v", err))
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(certLifetime),
		BasicConstraintsValid: true,
	}
}
