package manifest

import (
	"fmt"
	"path"
	"reflect"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// The restart policies a pod may have: any for a Pod, Always for the pods of a
// long-running workload, OnFailure or Never for a Job's.
var (
	anyRestart    = []string{"Always", "OnFailure", "Never"}
	alwaysRestart = []string{"Always"}
	jobRestart    = []string{"OnFailure", "Never"}
)

func (v *validator) podSpec(s *corev1.PodSpec, p *field.Path, restart []string) {
	v.oneOf(p.Child("restartPolicy"), string(s.RestartPolicy), restart...)
	v.oneOf(p.Child("dnsPolicy"), string(s.DNSPolicy), "ClusterFirst", "ClusterFirstWithHostNet", "Default", "None")
	if s.DNSPolicy == corev1.DNSNone && s.DNSConfig == nil {
		v.errorf(p.Child("dnsConfig"), "dnsConfig is required when dnsPolicy is None")
	}
	if c := s.DNSConfig; c != nil {
		for i, ns := range c.Nameservers {
			v.ip(p.Child("dnsConfig", "nameservers").Index(i), ns)
		}
	}
	if t := s.TerminationGracePeriodSeconds; t != nil && *t < 0 {
		v.errorf(p.Child("terminationGracePeriodSeconds"), "invalid value %d: must be greater than or equal to 0", *t)
	}
	v.positive(p.Child("activeDeadlineSeconds"), s.ActiveDeadlineSeconds)
	if s.Hostname != "" {
		v.check(p.Child("hostname"), s.Hostname, validation.IsDNS1123Label(s.Hostname))
	}
	if s.Subdomain != "" {
		v.check(p.Child("subdomain"), s.Subdomain, validation.IsDNS1123Label(s.Subdomain))
	}
	v.list(metavalidation.ValidateLabels(s.NodeSelector, p.Child("nodeSelector")))
	for i, t := range s.Tolerations {
		v.toleration(t, p.Child("tolerations").Index(i))
	}
	for i, h := range s.HostAliases {
		v.ip(p.Child("hostAliases").Index(i).Child("ip"), h.IP)
	}
	vols := v.volumes(s.Volumes, p.Child("volumes"))
	for name := range v.claimVolumes {
		vols[name] = true
	}
	if len(s.Containers) == 0 {
		v.errorf(p.Child("containers"), "at least one container is required")
	}
	names := map[string]bool{}
	hostPorts := map[string]bool{}
	for i := range s.InitContainers {
		v.container(&s.InitContainers[i], p.Child("initContainers").Index(i), vols, names, hostPorts, s.HostNetwork)
	}
	for i := range s.Containers {
		v.container(&s.Containers[i], p.Child("containers").Index(i), vols, names, hostPorts, s.HostNetwork)
	}
}

func (v *validator) toleration(t corev1.Toleration, p *field.Path) {
	if t.Key != "" {
		v.list(metavalidation.ValidateLabelName(t.Key, p.Child("key")))
	}
	switch t.Operator {
	case corev1.TolerationOpExists:
		if t.Value != "" {
			v.errorf(p.Child("value"), "must be empty when operator is Exists")
		}
	case "", corev1.TolerationOpEqual:
		if t.Key == "" {
			v.errorf(p.Child("operator"), "operator must be Exists when key is empty")
		}
	default:
		v.oneOf(p.Child("operator"), string(t.Operator), "Equal", "Exists")
	}
	if t.Effect != "" {
		v.oneOf(p.Child("effect"), string(t.Effect), "NoSchedule", "PreferNoSchedule", "NoExecute")
	}
}

// volumes checks the pod's volumes and returns their names.
func (v *validator) volumes(vols []corev1.Volume, p *field.Path) map[string]bool {
	names := map[string]bool{}
	for i := range vols {
		vol := &vols[i]
		vp := p.Index(i)
		v.uniqueLabel(vp.Child("name"), vol.Name, "volume", names)
		if countSources(vol.VolumeSource) > 1 {
			v.errorf(vp, "may not give more than one volume type")
			continue
		}
		v.volumeSource(&vol.VolumeSource, vp)
	}
	return names
}

// uniqueLabel checks a name that must be a DNS label, unique among seen.
func (v *validator) uniqueLabel(p *field.Path, name, what string, seen map[string]bool) {
	switch {
	case name == "":
		v.errorf(p, "name is required")
	case seen[name]:
		v.errorf(p, "duplicate %s name %q", what, name)
	default:
		v.check(p, name, validation.IsDNS1123Label(name))
	}
	seen[name] = true
}

// countSources counts the sources set in a VolumeSource or PersistentVolumeSource: every
// field of both is a pointer to one.
func countSources(src any) int {
	rv := reflect.ValueOf(src)
	n := 0
	for i := 0; i < rv.NumField(); i++ {
		if f := rv.Field(i); f.Kind() == reflect.Pointer && !f.IsNil() {
			n++
		}
	}
	return n
}

var hostPathTypes = []string{"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice", "BlockDevice"}

func (v *validator) volumeSource(s *corev1.VolumeSource, p *field.Path) {
	switch {
	case s.EmptyDir != nil:
		v.oneOf(p.Child("emptyDir", "medium"), string(s.EmptyDir.Medium), "", "Memory")
		if l := s.EmptyDir.SizeLimit; l != nil && l.Sign() < 0 {
			v.errorf(p.Child("emptyDir", "sizeLimit"), "invalid value %q: must be greater than or equal to 0", l.String())
		}
	case s.HostPath != nil:
		v.hostPath(s.HostPath, p.Child("hostPath"))
	case s.ConfigMap != nil:
		cp := p.Child("configMap")
		if s.ConfigMap.Name == "" {
			v.errorf(cp.Child("name"), "name is required")
		}
		v.keyToPaths(s.ConfigMap.Items, s.ConfigMap.DefaultMode, cp)
	case s.Secret != nil:
		sp := p.Child("secret")
		if s.Secret.SecretName == "" {
			v.errorf(sp.Child("secretName"), "secretName is required")
		}
		v.keyToPaths(s.Secret.Items, s.Secret.DefaultMode, sp)
	case s.DownwardAPI != nil:
		v.fileMode(s.DownwardAPI.DefaultMode, p.Child("downwardAPI", "defaultMode"))
		v.downwardItems(s.DownwardAPI.Items, p.Child("downwardAPI", "items"))
	case s.Projected != nil:
		pp := p.Child("projected")
		v.fileMode(s.Projected.DefaultMode, pp.Child("defaultMode"))
		for i, src := range s.Projected.Sources {
			sp := pp.Child("sources").Index(i)
			if countSources(src) != 1 {
				v.errorf(sp, "give exactly one of configMap, secret or downwardAPI")
				continue
			}
			switch {
			case src.ConfigMap != nil:
				v.keyToPaths(src.ConfigMap.Items, nil, sp.Child("configMap"))
			case src.Secret != nil:
				v.keyToPaths(src.Secret.Items, nil, sp.Child("secret"))
			case src.DownwardAPI != nil:
				v.downwardItems(src.DownwardAPI.Items, sp.Child("downwardAPI", "items"))
			}
		}
	case s.GitRepo != nil:
		gp := p.Child("gitRepo")
		if s.GitRepo.Repository == "" {
			v.errorf(gp.Child("repository"), "repository is required")
		}
		if d := s.GitRepo.Directory; d != "" {
			v.relativePath(gp.Child("directory"), d)
		}
	case s.PersistentVolumeClaim != nil:
		if s.PersistentVolumeClaim.ClaimName == "" {
			v.errorf(p.Child("persistentVolumeClaim", "claimName"), "claimName is required")
		}
	}
}

func (v *validator) hostPath(h *corev1.HostPathVolumeSource, p *field.Path) {
	if h.Path == "" {
		v.errorf(p.Child("path"), "path is required")
	} else if hasBacksteps(h.Path) {
		v.errorf(p.Child("path"), "invalid value %q: must not contain '..'", h.Path)
	}
	if h.Type != nil {
		v.oneOf(p.Child("type"), string(*h.Type), hostPathTypes...)
	}
}

func hasBacksteps(p string) bool {
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return true
		}
	}
	return false
}

// relativePath checks a path inside a volume: relative, without '..'.
func (v *validator) relativePath(p *field.Path, s string) {
	switch {
	case path.IsAbs(s):
		v.errorf(p, "invalid value %q: must be a relative path", s)
	case hasBacksteps(s):
		v.errorf(p, "invalid value %q: must not contain '..'", s)
	}
}

func (v *validator) fileMode(m *int32, p *field.Path) {
	if m != nil && (*m < 0 || *m > 0777) {
		v.errorf(p, "invalid value %d: must be a file mode between 0 and 0777 (octal), or 0 and 511 (decimal)", *m)
	}
}

func (v *validator) keyToPaths(items []corev1.KeyToPath, defaultMode *int32, p *field.Path) {
	v.fileMode(defaultMode, p.Child("defaultMode"))
	for i, it := range items {
		ip := p.Child("items").Index(i)
		if it.Key == "" {
			v.errorf(ip.Child("key"), "key is required")
		}
		if it.Path == "" {
			v.errorf(ip.Child("path"), "path is required")
		} else {
			v.relativePath(ip.Child("path"), it.Path)
		}
		v.fileMode(it.Mode, ip.Child("mode"))
	}
}

func (v *validator) downwardItems(items []corev1.DownwardAPIVolumeFile, p *field.Path) {
	for i, it := range items {
		ip := p.Index(i)
		if it.Path == "" {
			v.errorf(ip.Child("path"), "path is required")
		} else {
			v.relativePath(ip.Child("path"), it.Path)
		}
		v.fileMode(it.Mode, ip.Child("mode"))
		switch {
		case (it.FieldRef == nil) == (it.ResourceFieldRef == nil):
			v.errorf(ip, "give exactly one of fieldRef or resourceFieldRef")
		case it.FieldRef != nil:
			v.fieldPath(ip.Child("fieldRef", "fieldPath"), it.FieldRef.FieldPath, downwardVolumeFields)
		case it.ResourceFieldRef != nil:
			v.resourceFieldRef(it.ResourceFieldRef, ip.Child("resourceFieldRef"))
		}
	}
}

// The pod fields the downward API exposes: in a volume, and (more) in env.
var (
	downwardVolumeFields = []string{"metadata.name", "metadata.namespace", "metadata.uid", "metadata.labels", "metadata.annotations"}
	downwardEnvFields    = []string{"metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
		"spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP", "status.podIPs"}
)

func (v *validator) fieldPath(p *field.Path, fp string, allowed []string) {
	for _, prefix := range []string{"metadata.labels['", "metadata.annotations['"} {
		if strings.HasPrefix(fp, prefix) && strings.HasSuffix(fp, "']") {
			return
		}
	}
	v.oneOf(p, fp, allowed...)
}

func (v *validator) resourceFieldRef(r *corev1.ResourceFieldSelector, p *field.Path) {
	v.oneOf(p.Child("resource"), r.Resource, "limits.cpu", "limits.memory", "limits.ephemeral-storage",
		"requests.cpu", "requests.memory", "requests.ephemeral-storage")
}

// container checks one container; names and hostPorts collect across the pod.
func (v *validator) container(c *corev1.Container, p *field.Path, vols, names, hostPorts map[string]bool, hostNetwork bool) {
	v.uniqueLabel(p.Child("name"), c.Name, "container", names)
	if strings.TrimSpace(c.Image) == "" {
		v.errorf(p.Child("image"), "image is required")
	} else if c.Image != strings.TrimSpace(c.Image) {
		v.errorf(p.Child("image"), "invalid value %q: must not begin or end with whitespace", c.Image)
	}
	v.oneOf(p.Child("imagePullPolicy"), string(c.ImagePullPolicy), "Always", "IfNotPresent", "Never")
	v.oneOf(p.Child("terminationMessagePolicy"), string(c.TerminationMessagePolicy), "File", "FallbackToLogsOnError")
	portNames := v.ports(c.Ports, p.Child("ports"), hostPorts, hostNetwork)
	v.env(c, p)
	v.resources(&c.Resources, p.Child("resources"))
	mounts := map[string]bool{}
	for i, m := range c.VolumeMounts {
		mp := p.Child("volumeMounts").Index(i)
		if !vols[m.Name] {
			v.errorf(mp.Child("name"), "volume %q not found: no volume of the pod has that name", m.Name)
		}
		switch {
		case m.MountPath == "":
			v.errorf(mp.Child("mountPath"), "mountPath is required")
		case mounts[m.MountPath]:
			v.errorf(mp.Child("mountPath"), "duplicate mountPath %q", m.MountPath)
		}
		mounts[m.MountPath] = true
		if m.SubPath != "" {
			v.relativePath(mp.Child("subPath"), m.SubPath)
		}
	}
	probes := []struct {
		name  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}}
	for _, pr := range probes {
		if pr.probe != nil {
			v.probe(pr.probe, p.Child(pr.name), portNames, pr.name != "readinessProbe")
		}
	}
}

// ports checks a container's ports and returns their names.
func (v *validator) ports(ports []corev1.ContainerPort, p *field.Path, hostPorts map[string]bool, hostNetwork bool) map[string]bool {
	names := map[string]bool{}
	for i, port := range ports {
		pp := p.Index(i)
		if port.Name != "" {
			v.check(pp.Child("name"), port.Name, validation.IsValidPortName(port.Name))
			if names[port.Name] {
				v.errorf(pp.Child("name"), "duplicate port name %q", port.Name)
			}
			names[port.Name] = true
		}
		v.portNumber(pp.Child("containerPort"), port.ContainerPort, true)
		v.portNumber(pp.Child("hostPort"), port.HostPort, false)
		v.protocol(pp.Child("protocol"), port.Protocol)
		if port.HostIP != "" {
			v.ip(pp.Child("hostIP"), port.HostIP)
		}
		if hostNetwork && port.HostPort != port.ContainerPort {
			v.errorf(pp.Child("hostPort"), "invalid value %d: must equal containerPort with hostNetwork", port.HostPort)
		}
		if port.HostPort != 0 {
			key := fmt.Sprintf("%s/%s/%d", port.HostIP, port.Protocol, port.HostPort)
			if hostPorts[key] {
				v.errorf(pp.Child("hostPort"), "duplicate hostPort %d/%s in the pod", port.HostPort, port.Protocol)
			}
			hostPorts[key] = true
		}
	}
	return names
}

func (v *validator) env(c *corev1.Container, p *field.Path) {
	for i, e := range c.Env {
		ep := p.Child("env").Index(i)
		if e.Name == "" {
			v.errorf(ep.Child("name"), "name is required")
		} else {
			v.check(ep.Child("name"), e.Name, validation.IsRelaxedEnvVarName(e.Name))
		}
		vf := e.ValueFrom
		if vf == nil {
			continue
		}
		if e.Value != "" {
			v.errorf(ep.Child("valueFrom"), "may not be given together with value")
		}
		fp := ep.Child("valueFrom")
		if countSources(*vf) != 1 {
			v.errorf(fp, "give exactly one of configMapKeyRef, secretKeyRef, fieldRef or resourceFieldRef")
			continue
		}
		switch {
		case vf.ConfigMapKeyRef != nil:
			v.keyRef(vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key, fp.Child("configMapKeyRef"))
		case vf.SecretKeyRef != nil:
			v.keyRef(vf.SecretKeyRef.Name, vf.SecretKeyRef.Key, fp.Child("secretKeyRef"))
		case vf.FieldRef != nil:
			v.fieldPath(fp.Child("fieldRef", "fieldPath"), vf.FieldRef.FieldPath, downwardEnvFields)
		case vf.ResourceFieldRef != nil:
			v.resourceFieldRef(vf.ResourceFieldRef, fp.Child("resourceFieldRef"))
		}
	}
	for i, e := range c.EnvFrom {
		ep := p.Child("envFrom").Index(i)
		if e.Prefix != "" {
			v.check(ep.Child("prefix"), e.Prefix, validation.IsRelaxedEnvVarName(e.Prefix))
		}
		switch {
		case (e.ConfigMapRef == nil) == (e.SecretRef == nil):
			v.errorf(ep, "give exactly one of configMapRef or secretRef")
		case e.ConfigMapRef != nil && e.ConfigMapRef.Name == "":
			v.errorf(ep.Child("configMapRef", "name"), "name is required")
		case e.SecretRef != nil && e.SecretRef.Name == "":
			v.errorf(ep.Child("secretRef", "name"), "name is required")
		}
	}
}

func (v *validator) keyRef(name, key string, p *field.Path) {
	if name == "" {
		v.errorf(p.Child("name"), "name is required")
	}
	if key == "" {
		v.errorf(p.Child("key"), "key is required")
	} else {
		v.check(p.Child("key"), key, validation.IsConfigMapKey(key))
	}
}

func (v *validator) resources(r *corev1.ResourceRequirements, p *field.Path) {
	for _, list := range []struct {
		name string
		rl   corev1.ResourceList
	}{{"limits", r.Limits}, {"requests", r.Requests}} {
		for name, q := range list.rl {
			if q.Sign() < 0 {
				v.errorf(p.Child(list.name).Key(string(name)), "invalid value %q: must be greater than or equal to 0", q.String())
			}
		}
	}
	for name, req := range r.Requests {
		if lim, ok := r.Limits[name]; ok && req.Cmp(lim) > 0 {
			v.errorf(p.Child("requests").Key(string(name)), "invalid value %q: must be less than or equal to the %s limit of %s",
				req.String(), name, lim.String())
		}
	}
}

func (v *validator) probe(pr *corev1.Probe, p *field.Path, portNames map[string]bool, successMustBeOne bool) {
	switch countSources(pr.ProbeHandler) {
	case 0:
		v.errorf(p, "a probe needs a handler: exec, httpGet, tcpSocket or grpc")
	case 1:
	default:
		v.errorf(p, "a probe may have only one handler: exec, httpGet, tcpSocket or grpc")
	}
	v.nonNegative(p.Child("initialDelaySeconds"), &pr.InitialDelaySeconds)
	v.nonNegative(p.Child("timeoutSeconds"), &pr.TimeoutSeconds)
	v.nonNegative(p.Child("periodSeconds"), &pr.PeriodSeconds)
	v.nonNegative(p.Child("failureThreshold"), &pr.FailureThreshold)
	if successMustBeOne && pr.SuccessThreshold != 1 {
		v.errorf(p.Child("successThreshold"), "invalid value %d: must be 1 for liveness and startup probes", pr.SuccessThreshold)
	}
	if t := pr.TerminationGracePeriodSeconds; t != nil && *t <= 0 {
		v.errorf(p.Child("terminationGracePeriodSeconds"), "invalid value %d: must be greater than 0", *t)
	}
	switch {
	case pr.Exec != nil:
		if len(pr.Exec.Command) == 0 {
			v.errorf(p.Child("exec", "command"), "command is required")
		}
	case pr.HTTPGet != nil:
		hp := p.Child("httpGet")
		v.probePort(pr.HTTPGet.Port, hp.Child("port"), portNames)
		v.oneOf(hp.Child("scheme"), string(pr.HTTPGet.Scheme), "HTTP", "HTTPS")
		for i, h := range pr.HTTPGet.HTTPHeaders {
			v.check(hp.Child("httpHeaders").Index(i).Child("name"), h.Name, validation.IsHTTPHeaderName(h.Name))
		}
	case pr.TCPSocket != nil:
		v.probePort(pr.TCPSocket.Port, p.Child("tcpSocket", "port"), portNames)
	case pr.GRPC != nil:
		v.portNumber(p.Child("grpc", "port"), pr.GRPC.Port, true)
	}
}

// probePort checks a probe's port; a named port must be one of the container's.
func (v *validator) probePort(port intstr.IntOrString, p *field.Path, portNames map[string]bool) {
	v.intOrStringPort(p, port)
	if port.Type == intstr.String && port.StrVal != "" && !portNames[port.StrVal] {
		v.errorf(p, "port %q not found: the container has no port with that name", port.StrVal)
	}
}
