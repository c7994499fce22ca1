package volume

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestEmptyDir(t *testing.T) {
	limited := func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{
			{Name: "a", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("32Mi")}}},
			{Name: "b", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")}}},
		}
	}
	tests := []struct {
		name   string
		source corev1.EmptyDirVolumeSource
		pod    func(*corev1.Pod)
		tmpfs  string // "size=..." in the mount's super options; "" = on disk
		err    error
	}{
		{name: "on disk", source: corev1.EmptyDirVolumeSource{}},
		{name: "on disk with sizeLimit (enforced by the caller through DiskUsage)", source: corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("1Mi"))}},
		{name: "memory without limits is bounded by allocatable", source: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}, tmpfs: "size=1048576k"},
		{name: "memory with sizeLimit", source: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("16Mi"))}, tmpfs: "size=16384k"},
		{name: "memory bounded by the pod's memory limits", source: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}, pod: limited, tmpfs: "size=49152k"},
		{name: "sizeLimit above the pod's limits is capped", source: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory, SizeLimit: ptr(resource.MustParse("1Gi"))}, pod: limited, tmpfs: "size=49152k"},
		{name: "huge pages", source: corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumHugePages}, err: ErrUnsupported},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, dir := newManager(t, Config{})
			pod := newPod("e", corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &tc.source}})
			if tc.pod != nil {
				tc.pod(pod)
			}
			err := m.Setup(context.Background(), pod, newObjects())
			if tc.err != nil || err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Setup() = %v; want %v", err, tc.err)
				}
				return
			}
			vdir := filepath.Join(dir, "e", "volumes", typeEmptyDir, "scratch")
			fi, err := os.Stat(vdir)
			if err != nil || fi.Mode().Perm() != 0o777 {
				t.Fatalf("emptyDir %s: %v, %v; want a 0777 directory", vdir, fi, err)
			}
			mounts := mountsOf(t, vdir)
			line, mounted := mounts[vdir]
			if mounted != (tc.tmpfs != "") || (mounted && (!strings.Contains(line, " - tmpfs ") || !strings.Contains(line, tc.tmpfs))) {
				t.Fatalf("mount of %s = %q; want tmpfs %q", vdir, line, tc.tmpfs)
			}
			// Written data survives a second Setup (a container restart) and is counted.
			if err := os.WriteFile(filepath.Join(vdir, "data"), make([]byte, 100<<10), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := m.Setup(context.Background(), pod, newObjects()); err != nil {
				t.Fatal(err)
			}
			if len(mountsOf(t, vdir)) != len(mounts) {
				t.Errorf("second Setup mounted again: %v", mountsOf(t, vdir))
			}
			n, err := m.DiskUsage("e", "scratch")
			if err != nil || n < 100<<10 || n > 200<<10 {
				t.Errorf("DiskUsage() = %d, %v; want about 100 KiB", n, err)
			}
		})
	}
	t.Run("usage of an unknown volume", func(t *testing.T) {
		m, _ := newManager(t, Config{})
		if _, err := m.DiskUsage("nobody", "scratch"); !errors.Is(err, ErrNotFound) {
			t.Errorf("DiskUsage() = %v; want ErrNotFound", err)
		}
	})
}

func TestHostPath(t *testing.T) {
	root := t.TempDir()
	allowed := filepath.Join(root, "srv", "data")
	outside := filepath.Join(root, "etc")
	for _, d := range []string{allowed, outside, filepath.Join(root, "srv", "database"), filepath.Join(allowed, "sub")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	mustDo(t, os.WriteFile(filepath.Join(allowed, "file"), nil, 0o644))
	mustDo(t, os.WriteFile(filepath.Join(outside, "shadow"), nil, 0o600))
	mustDo(t, os.Symlink(outside, filepath.Join(allowed, "escape")))                    // a symlink out of the allowed tree
	mustDo(t, os.Symlink(filepath.Join(allowed, "sub"), filepath.Join(root, "inlink"))) // a symlink into it
	mustDo(t, os.Symlink(allowed, filepath.Join(root, "alias")))                        // the allowed prefix under another name
	mustDo(t, os.Symlink(filepath.Join(root, "missing"), filepath.Join(allowed, "dangling")))
	mustDo(t, unix.Mknod(filepath.Join(allowed, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	mustDo(t, unix.Mknod(filepath.Join(allowed, "loop"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
	sock := filepath.Join(allowed, "app.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	ht := func(typ corev1.HostPathType) *corev1.HostPathType { return &typ }
	tests := []struct {
		name   string
		allow  []string // default: the allowed directory
		path   string
		typ    *corev1.HostPathType
		source string // Mounts' Source; "" = path
		err    error
		msg    string
		check  func(t *testing.T)
	}{
		{name: "allowed directory, no type check", path: allowed},
		{name: "below an allowed prefix", path: filepath.Join(allowed, "file"), typ: ht(corev1.HostPathFile)},
		{name: "allowed through a symlinked allow entry", allow: []string{filepath.Join(root, "alias")}, path: filepath.Join(allowed, "file")},
		{name: "a symlink into the allowed tree resolves", path: filepath.Join(root, "inlink"), typ: ht(corev1.HostPathDirectory), source: filepath.Join(allowed, "sub")},
		{name: "no allow-list allows nothing", allow: []string{}, path: allowed, err: ErrHostPathNotAllowed,
			msg: `pod default/web-h: volume "host": hostPath not allowed: ` + allowed + ` is outside the prefixes the operator allows (none); allow it by starting the agent with --host-path-allow=` + allowed},
		{name: "outside the allow-list", path: filepath.Join(outside, "shadow"), err: ErrHostPathNotAllowed, msg: "--host-path-allow"},
		{name: "a sibling sharing the prefix string", path: filepath.Join(root, "srv", "database"), err: ErrHostPathNotAllowed},
		{name: "dot-dot out of the allowed tree", path: allowed + "/../../etc", err: ErrHostPathNotAllowed},
		{name: "a symlink escaping the allowed tree", path: filepath.Join(allowed, "escape", "shadow"), err: ErrHostPathNotAllowed, msg: "(resolving to " + filepath.Join(outside, "shadow") + ")"},
		{name: "a dangling symlink", path: filepath.Join(allowed, "dangling"), err: ErrInvalid},
		{name: "relative path", path: "srv/data", err: ErrInvalid},
		{name: "DirectoryOrCreate creates 0755", path: filepath.Join(allowed, "new", "dir"), typ: ht(corev1.HostPathDirectoryOrCreate), check: func(t *testing.T) {
			if fi, err := os.Stat(filepath.Join(allowed, "new", "dir")); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Errorf("created %v, %v; want a 0755 directory", fi, err)
			}
		}},
		{name: "DirectoryOrCreate on a file", path: filepath.Join(allowed, "file"), typ: ht(corev1.HostPathDirectoryOrCreate), err: ErrHostPathType, msg: "is not a directory"},
		{name: "Directory exists", path: allowed, typ: ht(corev1.HostPathDirectory)},
		{name: "Directory missing", path: filepath.Join(allowed, "nodir"), typ: ht(corev1.HostPathDirectory), err: ErrHostPathType, msg: "nodir is not a directory"},
		{name: "FileOrCreate creates 0644", path: filepath.Join(allowed, "created.txt"), typ: ht(corev1.HostPathFileOrCreate), check: func(t *testing.T) {
			if fi, err := os.Stat(filepath.Join(allowed, "created.txt")); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 {
				t.Errorf("created %v, %v; want a 0644 file", fi, err)
			}
		}},
		{name: "FileOrCreate needs its parent", path: filepath.Join(allowed, "noparent", "f"), typ: ht(corev1.HostPathFileOrCreate), msg: "create file"},
		{name: "FileOrCreate on a directory", path: allowed, typ: ht(corev1.HostPathFileOrCreate), err: ErrHostPathType, msg: "is not a file"},
		{name: "File on a directory", path: allowed, typ: ht(corev1.HostPathFile), err: ErrHostPathType, msg: "is not a file"},
		{name: "Socket", path: sock, typ: ht(corev1.HostPathSocket)},
		{name: "Socket on a file", path: filepath.Join(allowed, "file"), typ: ht(corev1.HostPathSocket), err: ErrHostPathType, msg: "is not a socket file"},
		{name: "CharDevice", path: filepath.Join(allowed, "null"), typ: ht(corev1.HostPathCharDev)},
		{name: "CharDevice on a block device", path: filepath.Join(allowed, "loop"), typ: ht(corev1.HostPathCharDev), err: ErrHostPathType, msg: "is not a character device"},
		{name: "BlockDevice", path: filepath.Join(allowed, "loop"), typ: ht(corev1.HostPathBlockDev)},
		{name: "BlockDevice on a char device", path: filepath.Join(allowed, "null"), typ: ht(corev1.HostPathBlockDev), err: ErrHostPathType, msg: "is not a block device"},
		{name: "unknown type", path: allowed, typ: ht("Pipe"), err: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allow := tc.allow
			if allow == nil {
				allow = []string{allowed}
			}
			m, _ := newManager(t, Config{HostPathAllow: allow})
			pod := newPod("h", corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: tc.path, Type: tc.typ}}})
			pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}
			err := m.Setup(context.Background(), pod, newObjects())
			if tc.err != nil || tc.msg != "" {
				if err == nil || (tc.err != nil && !errors.Is(err, tc.err)) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Setup() = %v; want %v containing %q", err, tc.err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup() = %v", err)
			}
			if tc.check != nil {
				tc.check(t)
			}
			mounts, err := m.Mounts(pod, &pod.Spec.Containers[0])
			want := tc.source
			if want == "" {
				want = filepath.Clean(tc.path)
			}
			if err != nil || len(mounts) != 1 || mounts[0] != (Mount{Source: want, Destination: "/host"}) {
				t.Errorf("Mounts() = %+v, %v; want source %s", mounts, err, want)
			}
		})
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
