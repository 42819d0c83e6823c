//! # direwolf-kubelet: a kubelet stand-in for tests (never shipped)
//!
//! Plays the kubelet of one Node against any API server (the emulator or a real control
//! plane), given a kubeconfig, running the pods bound to the node as local processes. It must
//! run as root (network and mount namespaces), with `ip` (iproute2), `unshare` and `nsenter`
//! (util-linux) on PATH.
//!
//! ```text
//! direwolf-kubelet --kubeconfig KUBECONFIG --node-name NODE [--node-labels k=v,...]
//!     [--capacity cpu=8,memory=16Gi,pods=110,nvidia.com/gpu=2] [--pod-cidr 10.77.0.0/16]
//!     [--bridge dwk0] [--state-dir DIR] [--images FILE] [--schedule] [--api-port 443]
//!     [--exit-with-pid PID]
//! ```
//!
//! * **Node**: registers `--node-name` with its labels and capacity, keeps it Ready and renews
//!   its Lease in `kube-node-lease` every 10 s. The test control plane's kwok only plays the
//!   nodes annotated `kwok.x-k8s.io/node=fake`, so it leaves this one alone. `--schedule` also
//!   binds unscheduled pods whose nodeSelector matches the node (API servers without a
//!   scheduler, such as the emulator).
//! * **Network**: a bridge (`--bridge`, the CIDR's first address) in the root namespace; per
//!   pod a network namespace `<bridge>-<pod uid>` with its own IP, joined by a veth pair,
//!   loopback up and a default route via the bridge: the host reaches pod IPs, pods reach each
//!   other and the host.
//! * **API access from pods**: a TCP forwarder on the bridge address (`--api-port`) to the API
//!   server; `KUBERNETES_SERVICE_HOST`/`_PORT` point at it, `/etc/hosts` maps
//!   `kubernetes.default.svc` (and shorter names) to it. Credentials come from the pod's
//!   projected `kube-api-access` volume (the ServiceAccount admission plugin's: a TokenRequest
//!   for the pod's account, bound to the pod, the `kube-root-ca.crt` ConfigMap, the
//!   namespace); where no admission plugin added one (the emulator), the stand-in writes
//!   `token`, `ca.crt` and `namespace` itself at
//!   `/var/run/secrets/kubernetes.io/serviceaccount/`. TLS verifies when the API server's
//!   certificate names the bridge address (the test control plane's names `10.77.0.1`, the
//!   default) or through `kubernetes.default.svc`. A plain-HTTP API server (the emulator) gives
//!   pods no working in-cluster access.
//! * **Containers**: the image map (`--images` or `DIREWOLF_KUBELET_IMAGES`, YAML:
//!   `image: {argv: [..], env: {..}}`) says which program stands for which image; the argv is
//!   the image's entrypoint: a container's `command` replaces it, its `args` are appended.
//!   `$(VAR)` expands from the container's env (plus `POD_IP`). An image missing from the map
//!   leaves the container Waiting with reason `ImageNotMapped`. Each container is a process in
//!   the pod's network namespace and a mount namespace of its own where each volumeMount is
//!   bind-mounted at its mountPath. **A mountpoint missing on the host is created on the
//!   host** (the container shares the host's filesystem). Volumes: emptyDir
//!   (`STATE/pods/<uid>/volumes/<name>`), PVC (`STATE/claims/<ns>/<claim>`, kept across pods),
//!   hostPath, secret, configMap, downwardAPI, projected. Env: `value`, fieldRef,
//!   secretKeyRef, configMapKeyRef, envFrom, then the image map's env. Logs:
//!   `STATE/logs/<ns>_<pod>_<container>.log`.
//! * **Status**: Pending → Running with podIP(s), hostIP, startTime, container statuses
//!   (waiting, running, terminated with exit code and reason), conditions PodScheduled,
//!   Initialized, ContainersReady and Ready, via `pods/status`. Readiness and liveness probes
//!   (httpGet, tcpSocket, exec) run from the host against the pod IP with their periods and
//!   thresholds. restartPolicy Never, OnFailure and Always, restarts with a backoff of 1 s
//!   doubling to 30 s (shorter than Kubernetes', for tests). Startup probes are not run.
//! * **Deletion**: on a deletionTimestamp, SIGTERM to every container's process group, SIGKILL
//!   after the grace period, the network namespace and the pod's directory removed, then the
//!   pod object deleted with grace period 0. On its own SIGTERM the stand-in kills everything
//!   and removes its namespaces and the bridge (pod objects are left, as a stopped kubelet
//!   leaves them).

#![warn(missing_docs)]

pub mod config;
pub mod context;
pub mod credentials;
pub mod env;
pub mod forward;
pub mod images;
pub mod kubelet;
pub mod net;
pub mod node;
pub mod pod;
pub mod probe;
pub mod process;
pub mod volumes;
