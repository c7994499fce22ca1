// Package state is skiff's replicated cluster state: an immutable snapshot of the live
// commit, the objects it declares, and the objects controllers made from them (ReplicaSets,
// Pods with their placements and reported status, Nodes). The Raft FSM applies Commands to
// it; every reader shares the same snapshot and never changes it.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"time"

	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/skiffhq/skiff/manifest"
)

// Commit describes a git commit.
type Commit struct {
	Hash    string    `json:"hash"`
	Ref     string    `json:"ref,omitempty"`
	Subject string    `json:"subject,omitempty"` // first line of the commit message
	Author  string    `json:"author,omitempty"`
	Time    time.Time `json:"time,omitempty"` // commit time
	// AppliedAt is when the commit became live (set by Apply from the command's time).
	AppliedAt time.Time `json:"appliedAt,omitempty"`
	// Problems are the commit's "unsupported" warnings (a live commit has no errors).
	Problems manifest.Problems `json:"problems,omitempty"`
}

// Failure is a commit (or a fetch) that could not be applied. The live commit stays live.
type Failure struct {
	Commit   Commit            `json:"commit"`          // the rejected commit; Hash empty when the fetch itself failed
	At       time.Time         `json:"at"`              // when it was rejected
	Error    string            `json:"error,omitempty"` // fetch or checkout error
	Problems manifest.Problems `json:"problems,omitempty"`
}

// Same reports whether two failures are the same rejection (ignoring when it happened), so
// the leader does not write an identical failure to the log on every poll.
func (f *Failure) Same(g *Failure) bool {
	if f == nil || g == nil {
		return f == g
	}
	return f.Commit.Hash == g.Commit.Hash && f.Error == g.Error && reflect.DeepEqual(f.Problems, g.Problems)
}

// State is one immutable snapshot of the cluster.
type State struct {
	Index   uint64   // Raft index of the last command applied
	Live    Commit   // the commit every node runs
	Failed  *Failure // the newest rejected commit or fetch error, nil when none
	Git     Objects  // objects declared by the live commit, defaults applied
	Cluster Objects  // objects made by skiff: Pods (placed, with status), ReplicaSets, Nodes, ...
}

// Empty is the state before anything was applied.
func Empty() *State { return &State{} }

// Synced reports whether a commit has ever been applied.
func (s *State) Synced() bool { return s.Live.Hash != "" }

// Obj wraps an object so it encodes as JSON with apiVersion and kind and decodes back into
// its concrete type.
type Obj struct{ manifest.Object }

// MarshalJSON encodes the object with its type information.
func (o Obj) MarshalJSON() ([]byte, error) { return manifest.Encode(o.Object) }

// UnmarshalJSON decodes a typed object.
func (o *Obj) UnmarshalJSON(b []byte) error {
	obj, err := manifest.Decode(b)
	if err != nil {
		return err
	}
	o.Object = obj
	return nil
}

// Wrap converts objects for a Command.
func Wrap[T manifest.Object](objs ...T) []Obj {
	out := make([]Obj, len(objs))
	for i, o := range objs {
		out[i] = Obj{o}
	}
	return out
}

// Ref names an object to delete; UID, when set, must match, so a stale decision never
// removes a newer object with the same name.
type Ref struct {
	Key
	UID types.UID `json:"uid,omitempty"`
	// Force removes a pod at once. Without it a pod placed on a node is only marked
	// terminating (deletionTimestamp); its node removes it once its containers stopped.
	Force bool `json:"force,omitempty"`
}

// PodStatus is a node's report of one pod's status.
type PodStatus struct {
	Key
	UID    types.UID        `json:"uid"`
	Status corev1.PodStatus `json:"status"`
}

// Command is one entry of the Raft log. Its parts apply in field order: Sync, Reject,
// ClearFailure, Put, Status, Delete.
type Command struct {
	// At is the proposer's clock; Apply uses it for every timestamp, so replay is exact.
	At           time.Time   `json:"at"`
	Sync         *Sync       `json:"sync,omitempty"`
	Reject       *Failure    `json:"reject,omitempty"`
	ClearFailure bool        `json:"clearFailure,omitempty"`
	Put          []Obj       `json:"put,omitempty"`
	Status       []PodStatus `json:"status,omitempty"`
	Delete       []Ref       `json:"delete,omitempty"`
}

// Sync makes a commit live with exactly the given objects.
type Sync struct {
	Commit  Commit `json:"commit"`
	Objects []Obj  `json:"objects"`
}

// Empty reports whether the command would change nothing.
func (c *Command) Empty() bool {
	return c.Sync == nil && c.Reject == nil && !c.ClearFailure && len(c.Put) == 0 &&
		len(c.Status) == 0 && len(c.Delete) == 0
}

// Encode renders a command for the Raft log.
func (c *Command) Encode() ([]byte, error) { return json.Marshal(c) }

// DecodeCommand reads a command from the Raft log.
func DecodeCommand(b []byte) (*Command, error) {
	var c Command
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	return &c, nil
}

// ErrEmptyCommand is returned for a command with nothing in it.
var ErrEmptyCommand = errors.New("empty command")

// Apply returns the state after applying c at Raft index. It is deterministic: the same
// state, index and command always give the same result. s is not changed.
func (s *State) Apply(index uint64, c *Command) (*State, error) {
	if c.Empty() {
		return nil, ErrEmptyCommand
	}
	n := *s
	n.Index = index
	rv := strconv.FormatUint(index, 10)
	at := metav1.NewTime(c.At.UTC().Truncate(time.Second))

	if c.Sync != nil {
		n.Git = syncObjects(s.Git, c.Sync.Objects, rv, at)
		n.Live = c.Sync.Commit
		n.Live.AppliedAt = c.At
		n.Failed = nil
	}
	if c.Reject != nil {
		f := *c.Reject
		n.Failed = &f
	}
	if c.ClearFailure {
		n.Failed = nil
	}
	cluster := n.Cluster.Builder()
	for _, o := range c.Put {
		if o.Object == nil {
			continue
		}
		cluster.Put(putObject(cluster, o.Object, rv, at, index))
	}
	for _, st := range c.Status {
		old, ok := cluster.Get(st.Key)
		pod, isPod := old.(*corev1.Pod)
		if !ok || !isPod || pod.UID != st.UID {
			continue // the pod was replaced or deleted meanwhile: the report is stale
		}
		p := pod.DeepCopy()
		p.Status = *st.Status.DeepCopy()
		p.ResourceVersion = rv
		cluster.Put(p)
	}
	for _, ref := range c.Delete {
		old, ok := cluster.Get(ref.Key)
		if !ok || (ref.UID != "" && old.GetUID() != ref.UID) {
			continue
		}
		if pod, isPod := old.(*corev1.Pod); isPod && !ref.Force && pod.Spec.NodeName != "" {
			if pod.DeletionTimestamp != nil {
				continue
			}
			p := pod.DeepCopy()
			p.DeletionTimestamp = &at
			grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
			if p.Spec.TerminationGracePeriodSeconds != nil {
				grace = *p.Spec.TerminationGracePeriodSeconds
			}
			p.DeletionGracePeriodSeconds = &grace
			p.ResourceVersion = rv
			cluster.Put(p)
			continue
		}
		cluster.Delete(ref.Key)
	}
	n.Cluster = cluster.Objects()
	return &n, nil
}

// syncObjects builds the git object set of a new commit. An object keeps its UID and
// creation time across commits; its generation goes up when anything but metadata changed.
func syncObjects(prev Objects, objs []Obj, rv string, at metav1.Time) Objects {
	list := make([]manifest.Object, 0, len(objs))
	for _, w := range objs {
		if w.Object == nil {
			continue
		}
		o := w.Object.DeepCopyObject().(manifest.Object)
		_ = manifest.SetTypeMeta(o)
		k := KeyOf(o)
		if old, ok := prev.Get(k); ok {
			o.SetUID(old.GetUID())
			o.SetCreationTimestamp(old.GetCreationTimestamp())
			o.SetGeneration(old.GetGeneration())
			o.SetResourceVersion(old.GetResourceVersion())
			if !sameContent(old, o) {
				o.SetGeneration(old.GetGeneration() + 1)
				o.SetResourceVersion(rv)
			}
		} else {
			o.SetUID(DeterministicUID(k, rv))
			o.SetCreationTimestamp(at)
			o.SetGeneration(1)
			o.SetResourceVersion(rv)
		}
		list = append(list, o)
	}
	return NewObjects(list...)
}

// putObject prepares a controller-made object for the cluster set: type information, UID,
// creation time and resource version; a pod replaced with the same UID keeps its status.
func putObject(cur interface {
	Get(Key) (manifest.Object, bool)
}, in manifest.Object, rv string, at metav1.Time, index uint64) manifest.Object {
	o := in.DeepCopyObject().(manifest.Object)
	_ = manifest.SetTypeMeta(o)
	k := KeyOf(o)
	old, exists := cur.Get(k)
	if o.GetUID() == "" {
		if exists {
			o.SetUID(old.GetUID())
		} else {
			o.SetUID(DeterministicUID(k, strconv.FormatUint(index, 10)))
		}
	}
	if ts := o.GetCreationTimestamp(); ts.IsZero() {
		if exists && old.GetUID() == o.GetUID() {
			o.SetCreationTimestamp(old.GetCreationTimestamp())
		} else {
			o.SetCreationTimestamp(at)
		}
	}
	if pod, ok := o.(*corev1.Pod); ok && exists {
		if oldPod, ok := old.(*corev1.Pod); ok && oldPod.UID == pod.UID && pod.Status.Phase == "" {
			pod.Status = *oldPod.Status.DeepCopy()
		}
	}
	o.SetResourceVersion(rv)
	return o
}

// sameContent compares two objects ignoring server-set metadata.
func sameContent(a, b manifest.Object) bool {
	a = a.DeepCopyObject().(manifest.Object)
	b = b.DeepCopyObject().(manifest.Object)
	for _, o := range []manifest.Object{a, b} {
		o.SetUID("")
		o.SetResourceVersion("")
		o.SetGeneration(0)
		o.SetCreationTimestamp(metav1.Time{})
	}
	return equality.Semantic.DeepEqual(a, b)
}

var uidSpace = uuid.MustParse("6f1f2b8e-5c1a-4c55-9a43-2a1c4e0c9d11")

// DeterministicUID derives a UID from a key and a seed (the Raft index that created the
// object), so every node that replays the log computes the same UID.
func DeterministicUID(k Key, seed string) types.UID {
	return types.UID(uuid.NewSHA1(uidSpace, []byte(k.String()+"@"+seed)).String())
}

// snapshot is the JSON form of a State, for Raft snapshots.
type snapshot struct {
	Index   uint64   `json:"index"`
	Live    Commit   `json:"live"`
	Failed  *Failure `json:"failed,omitempty"`
	Git     []Obj    `json:"git"`
	Cluster []Obj    `json:"cluster"`
}

// MarshalJSON encodes the whole state (used for Raft snapshots and debugging).
func (s *State) MarshalJSON() ([]byte, error) {
	return json.Marshal(snapshot{
		Index: s.Index, Live: s.Live, Failed: s.Failed,
		Git: Wrap(s.Git.All()...), Cluster: Wrap(s.Cluster.All()...),
	})
}

// UnmarshalJSON restores a state written by MarshalJSON.
func (s *State) UnmarshalJSON(b []byte) error {
	var snap snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return err
	}
	unwrap := func(ws []Obj) []manifest.Object {
		out := make([]manifest.Object, 0, len(ws))
		for _, w := range ws {
			out = append(out, w.Object)
		}
		return out
	}
	*s = State{Index: snap.Index, Live: snap.Live, Failed: snap.Failed,
		Git: NewObjects(unwrap(snap.Git)...), Cluster: NewObjects(unwrap(snap.Cluster)...)}
	return nil
}
