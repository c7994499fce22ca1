// Package reconciler keeps this node's containers in step with the pods the cluster placed
// on it (the node loop, skiff's kubelet): it creates and removes pod sandboxes, starts and
// restarts containers with back-off, runs probes, mounts volumes and reports pod status.
package reconciler

import (
	"context"
	"errors"
	"io"
	"time"
)

// Labels every runtime object skiff creates carries. Only objects with LabelManaged are ever
// listed, changed or removed: skiff never touches containers it did not create.
const (
	LabelManaged   = "io.skiff.managed"  // "true"
	LabelNode      = "io.skiff.node"     // node name
	LabelPodUID    = "io.skiff.pod.uid"  // owner pod UID
	LabelPodName   = "io.skiff.pod.name" // pod name
	LabelNamespace = "io.skiff.pod.namespace"
	LabelContainer = "io.skiff.container" // k8s container name (absent on the infra container)
	LabelAttempt   = "io.skiff.attempt"   // restart attempt, 0 for the first run
	LabelInit      = "io.skiff.init"      // "true" on init containers
	LabelSpecHash  = "io.skiff.spec-hash" // hash of the container spec it was created from
)

// Errors the runtime returns; check with errors.Is.
var (
	ErrNotFound      = errors.New("not found")
	ErrImageNotFound = errors.New("image not found") // not present locally and cannot be pulled
)

// Runtime runs pod sandboxes and containers on this node. Implementations are idempotent
// where the method says so, and must label everything they create with the labels above.
type Runtime interface {
	// Pods lists every pod sandbox skiff created on this node (for any node name label:
	// the caller decides what is foreign), with their containers.
	Pods(ctx context.Context) ([]Pod, error)
	// CreatePod creates a pod sandbox (network namespace, hostname, DNS, published ports)
	// and starts its infra container. If a sandbox with cfg.UID exists it is returned.
	CreatePod(ctx context.Context, cfg PodConfig) (Pod, error)
	// RemovePod stops every container of the sandbox, giving each grace to exit after
	// SIGTERM, and removes it with its containers. A missing sandbox is not an error.
	RemovePod(ctx context.Context, id string, grace time.Duration) error

	// EnsureImage makes an image present according to the pull policy and returns its ID.
	// A missing image that cannot be pulled gives an error wrapping ErrImageNotFound.
	EnsureImage(ctx context.Context, image string, policy PullPolicy) (string, error)
	// CreateContainer creates a container in a sandbox; it does not start it.
	CreateContainer(ctx context.Context, podID string, cfg ContainerConfig) (Container, error)
	// StartContainer starts a created or exited container.
	StartContainer(ctx context.Context, id string) error
	// StopContainer sends the stop signal and kills after grace. Stopping a stopped
	// container is not an error.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer removes a container (stopping it first). A missing one is not an error.
	RemoveContainer(ctx context.Context, id string) error
	// Container returns the current state of one container.
	Container(ctx context.Context, id string) (Container, error)

	// Logs writes a container's output to w (stdout and stderr interleaved) until the
	// container exits when opts.Follow, or ctx ends.
	Logs(ctx context.Context, id string, opts LogOptions, w io.Writer) error
	// Exec runs cmd in a running container and returns its exit code.
	Exec(ctx context.Context, id string, opts ExecOptions) (int, error)

	// Events delivers a value whenever a skiff container changes state (started, died,
	// OOM), so the node loop reacts at once instead of waiting for its next resync. The
	// channel closes when ctx ends or the stream breaks; callers resubscribe.
	Events(ctx context.Context) (<-chan Event, error)
}

// PullPolicy is a container's imagePullPolicy.
type PullPolicy string

const (
	PullAlways       PullPolicy = "Always"
	PullIfNotPresent PullPolicy = "IfNotPresent"
	PullNever        PullPolicy = "Never"
)

// PodConfig describes a pod sandbox.
type PodConfig struct {
	UID       string
	Namespace string
	Name      string
	Node      string            // node name, recorded as LabelNode
	Hostname  string            // pod hostname (spec.hostname or the pod name)
	Labels    map[string]string // extra labels (skiff's own are added by the runtime)
	// Network is the runtime network to attach to ("" for the runtime's default bridge).
	Network     string
	HostNetwork bool
	Ports       []PortMapping
	DNS         DNSConfig
	Hosts       []HostEntry // extra /etc/hosts entries (hostAliases)
}

// PortMapping publishes a container port on the node (hostPort).
type PortMapping struct {
	HostIP        string
	HostPort      uint16
	ContainerPort uint16
	Protocol      string // "tcp", "udp" or "sctp"
}

// DNSConfig is the pod's resolv.conf. Empty fields keep the runtime's defaults.
type DNSConfig struct {
	Servers  []string
	Searches []string
	Options  []string
}

// HostEntry is one /etc/hosts line.
type HostEntry struct {
	IP        string
	Hostnames []string
}

// ContainerConfig describes one container of a pod, fully resolved: env values looked up,
// volumes prepared on the host.
type ContainerConfig struct {
	Name       string // k8s container name
	Attempt    int    // restart attempt, recorded as LabelAttempt
	Init       bool   // an init container
	SpecHash   string // recorded as LabelSpecHash
	Image      string
	Entrypoint []string // k8s command: replaces the image's ENTRYPOINT when set
	Args       []string // k8s args: replaces the image's CMD when set
	WorkingDir string
	Env        []string // KEY=value
	Mounts     []Mount
	// Resources: limits enforced by the kernel (0 = unlimited).
	MemoryLimit int64 // bytes
	CPULimit    int64 // millicores, enforced as CFS quota
	CPURequest  int64 // millicores, as cpu shares
	StopSignal  string
	StopTimeout time.Duration
	TTY         bool
	Stdin       bool
	// Security context.
	User           string // "uid[:gid]"
	Privileged     bool
	ReadOnlyRootFS bool
	CapAdd         []string
	CapDrop        []string
	Labels         map[string]string
}

// Mount bind-mounts a host path (or a fresh tmpfs when Type is "tmpfs") into a container.
type Mount struct {
	Type        string // "bind" (default) or "tmpfs"
	Source      string // host path for bind mounts
	Destination string
	ReadOnly    bool
	SubPath     string // relative to Source; resolved by the caller before the runtime sees it
	SizeBytes   int64  // tmpfs size limit, 0 = runtime default
}

// Pod is a pod sandbox as the runtime reports it.
type Pod struct {
	ID         string
	UID        string // LabelPodUID
	Namespace  string
	Name       string
	Node       string // LabelNode
	IP         string // primary IP in the pod network, "" when host network or not running
	Running    bool   // infra container running
	Created    time.Time
	Containers []Container // skiff containers only, not the infra container
}

// ContainerState is a container's lifecycle state.
type ContainerState string

const (
	StateCreated ContainerState = "created"
	StateRunning ContainerState = "running"
	StateExited  ContainerState = "exited"
	StateUnknown ContainerState = "unknown"
)

// Container is a container as the runtime reports it.
type Container struct {
	ID         string
	PodID      string
	Name       string // k8s container name (LabelContainer)
	Attempt    int    // LabelAttempt
	Init       bool   // LabelInit
	SpecHash   string // LabelSpecHash
	Image      string
	ImageID    string
	State      ContainerState
	ExitCode   int
	OOMKilled  bool
	Error      string // runtime error starting the container, if any
	Created    time.Time
	StartedAt  time.Time
	FinishedAt time.Time
	Labels     map[string]string
}

// LogOptions select which output Logs returns.
type LogOptions struct {
	Follow     bool
	Timestamps bool
	Since      time.Time
	TailLines  int // 0 = all
}

// ExecOptions describe a command run in a container. TTY merges stderr into stdout.
type ExecOptions struct {
	Cmd    []string
	Stdin  io.Reader // nil for no stdin
	Stdout io.Writer
	Stderr io.Writer
	TTY    bool
	Env    []string
}

// EventKind says what happened to a container.
type EventKind string

const (
	EventStarted EventKind = "start"
	EventDied    EventKind = "died"
	EventOOM     EventKind = "oom"
	EventOther   EventKind = "other"
)

// Event reports a state change of a skiff container.
type Event struct {
	Kind        EventKind
	ContainerID string
	PodUID      string
	Time        time.Time
}
