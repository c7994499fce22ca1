package manifest

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
	_ "time/tzdata" // CronJob time zones on nodes without a zoneinfo database

	cron "github.com/robfig/cron/v3"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metavalidation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// fieldError is one validation failure of a typed object.
type fieldError struct {
	field    string
	severity Severity
	message  string
}

// validator collects what is wrong with one object, with field paths. It checks what the
// Kubernetes API server checks on create (the parts that matter to what runs), plus the
// few values skiff cannot honour.
type validator struct {
	errs         []fieldError
	claimVolumes map[string]bool // a StatefulSet's volumeClaimTemplates: volumes its pods may mount
}

func (v *validator) errorf(p *field.Path, format string, args ...any) {
	v.errs = append(v.errs, fieldError{field: p.String(), severity: Error, message: fmt.Sprintf(format, args...)})
}

// unsupported reports a value skiff cannot honour where ignoring it would run something
// materially different: an Error.
func (v *validator) unsupported(p *field.Path, format string, args ...any) {
	v.errorf(p, "not supported by skiff: "+format, args...)
}

// list adds errors from apimachinery's validators, in Kubernetes' own words.
func (v *validator) list(errs field.ErrorList) {
	for _, e := range errs {
		v.errs = append(v.errs, fieldError{field: e.Field, severity: Error, message: lowerFirst(e.ErrorBody())})
	}
}

// check adds the messages of a util/validation IsXxx function for value.
func (v *validator) check(p *field.Path, value string, msgs []string) {
	for _, m := range msgs {
		v.errorf(p, "invalid value %q: %s", value, m)
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func (v *validator) oneOf(p *field.Path, value string, allowed ...string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	v.errorf(p, "unsupported value %q: must be %s", value, orList(allowed))
}

func orList(vals []string) string {
	q := make([]string, len(vals))
	for i, s := range vals {
		q[i] = fmt.Sprintf("%q", s)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "one of " + strings.Join(q, ", ")
}

func (v *validator) nonNegative(p *field.Path, n *int32) {
	if n != nil && *n < 0 {
		v.errorf(p, "invalid value %d: must be greater than or equal to 0", *n)
	}
}

func (v *validator) positive(p *field.Path, n *int64) {
	if n != nil && *n <= 0 {
		v.errorf(p, "invalid value %d: must be greater than 0", *n)
	}
}

func (v *validator) portNumber(p *field.Path, port int32, required bool) {
	if port == 0 && !required {
		return
	}
	for _, m := range validation.IsValidPortNum(int(port)) {
		v.errorf(p, "invalid value %d: %s", port, m)
	}
}

// intOrStringPort checks a port given by number or by name.
func (v *validator) intOrStringPort(p *field.Path, port intstr.IntOrString) {
	if port.Type == intstr.String {
		v.check(p, port.StrVal, validation.IsValidPortName(port.StrVal))
		return
	}
	v.portNumber(p, port.IntVal, true)
}

func (v *validator) protocol(p *field.Path, proto corev1.Protocol) {
	v.oneOf(p, string(proto), "TCP", "UDP", "SCTP")
}

func (v *validator) ip(p *field.Path, s string) {
	if _, err := netip.ParseAddr(s); err != nil {
		v.errorf(p, "invalid value %q: must be a valid IP address", s)
	}
}

// validate checks a decoded, defaulted object.
func validate(o Object) []fieldError {
	v := &validator{}
	v.meta(o)
	switch o := o.(type) {
	case *corev1.Pod:
		v.podSpec(&o.Spec, field.NewPath("spec"), anyRestart)
	case *corev1.ReplicationController:
		v.replicationController(o)
	case *appsv1.Deployment:
		v.deployment(o)
	case *appsv1.ReplicaSet:
		p := field.NewPath("spec")
		v.nonNegative(p.Child("replicas"), o.Spec.Replicas)
		v.nonNegative(p.Child("minReadySeconds"), &o.Spec.MinReadySeconds)
		v.selectorAndTemplate(o.Spec.Selector, &o.Spec.Template, p, "ReplicaSet")
	case *appsv1.StatefulSet:
		v.statefulSet(o)
	case *appsv1.DaemonSet:
		v.daemonSet(o)
	case *batchv1.Job:
		v.jobSpec(&o.Spec, field.NewPath("spec"))
	case *batchv1.CronJob:
		v.cronJob(o)
	case *corev1.Service:
		v.service(&o.Spec)
	case *corev1.Endpoints:
		v.endpoints(o)
	case *networkingv1.Ingress:
		v.ingress(&o.Spec)
	case *corev1.ConfigMap:
		v.configMap(o)
	case *corev1.Secret:
		v.secret(o)
	case *corev1.PersistentVolumeClaim:
		v.pvcSpec(&o.Spec, field.NewPath("spec"))
	case *corev1.PersistentVolume:
		v.persistentVolume(o)
	}
	return v.errs
}

// nameRules gives the name format of each kind, as the API server checks it.
func nameRule(kind string) (func(string, bool) []string, int) {
	switch kind {
	case "Service":
		return apivalidation.NameIsDNS1035Label, 0
	case "Namespace":
		return apivalidation.NameIsDNSLabel, 0
	case "CronJob":
		return apivalidation.NameIsDNSSubdomain, 52 // room for the Jobs' time suffix
	case "Job":
		return apivalidation.NameIsDNSSubdomain, 63 // its pods' job-name label holds it
	case "StatefulSet":
		// Its pods are named NAME-ORDINAL and use that as their hostname (a DNS label), and
		// their controller-revision-hash label holds NAME-HASH (a label value, 63 at most).
		return apivalidation.NameIsDNSLabel, 52
	}
	return apivalidation.NameIsDNSSubdomain, 0
}

func (v *validator) meta(o Object) {
	p := field.NewPath("metadata")
	kind := KindOf(o)
	if o.GetName() == "" {
		v.errorf(p.Child("name"), "name is required")
	} else {
		isName, max := nameRule(kind)
		v.check(p.Child("name"), o.GetName(), isName(o.GetName(), false))
		if max > 0 && len(o.GetName()) > max {
			v.errorf(p.Child("name"), "invalid value %q: a %s name must be no more than %d characters", o.GetName(), kind, max)
		}
	}
	if ns := o.GetNamespace(); ns != "" {
		v.check(p.Child("namespace"), ns, apivalidation.ValidateNamespaceName(ns, false))
	}
	v.list(metavalidation.ValidateLabels(o.GetLabels(), p.Child("labels")))
	v.list(apivalidation.ValidateAnnotations(o.GetAnnotations(), p.Child("annotations")))
}

func (v *validator) templateMeta(m *metav1.ObjectMeta, p *field.Path) {
	v.list(metavalidation.ValidateLabels(m.Labels, p.Child("labels")))
	v.list(apivalidation.ValidateAnnotations(m.Annotations, p.Child("annotations")))
}

// selectorAndTemplate checks an apps/v1 workload's selector and pod template: the selector
// is required, and must select the pods the template makes.
func (v *validator) selectorAndTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, spec *field.Path, kind string) {
	sp := spec.Child("selector")
	tp := spec.Child("template")
	v.templateMeta(&t.ObjectMeta, tp.Child("metadata"))
	v.podSpec(&t.Spec, tp.Child("spec"), alwaysRestart)
	switch {
	case sel == nil:
		v.errorf(sp, "selector is required (apps/v1 does not take it from the template labels)")
		return
	case len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0:
		v.errorf(sp, "empty selector is invalid for a %s: it would select every pod", kind)
		return
	}
	errs := metavalidation.ValidateLabelSelector(sel, metavalidation.LabelSelectorValidationOptions{}, sp)
	v.list(errs)
	if len(errs) > 0 {
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		v.errorf(sp, "invalid selector: %v", err)
		return
	}
	if !s.Matches(labels.Set(t.Labels)) {
		v.errorf(tp.Child("metadata", "labels"), "selector does not match template labels (selector %s; labels %s)",
			quoteEmpty(s.String()), quoteEmpty(labels.Set(t.Labels).String()))
	}
}

func quoteEmpty(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func (v *validator) replicationController(rc *corev1.ReplicationController) {
	p := field.NewPath("spec")
	v.nonNegative(p.Child("replicas"), rc.Spec.Replicas)
	v.nonNegative(p.Child("minReadySeconds"), &rc.Spec.MinReadySeconds)
	if rc.Spec.Template == nil {
		v.errorf(p.Child("template"), "template is required")
		return
	}
	tp := p.Child("template")
	v.templateMeta(&rc.Spec.Template.ObjectMeta, tp.Child("metadata"))
	v.podSpec(&rc.Spec.Template.Spec, tp.Child("spec"), alwaysRestart)
	if len(rc.Spec.Selector) == 0 {
		v.errorf(p.Child("selector"), "selector is required: set it or give the template labels")
		return
	}
	v.list(metavalidation.ValidateLabels(rc.Spec.Selector, p.Child("selector")))
	sel := labels.SelectorFromSet(rc.Spec.Selector)
	if !sel.Matches(labels.Set(rc.Spec.Template.Labels)) {
		v.errorf(tp.Child("metadata", "labels"), "selector does not match template labels (selector %s; labels %s)",
			quoteEmpty(sel.String()), quoteEmpty(labels.Set(rc.Spec.Template.Labels).String()))
	}
}

func (v *validator) deployment(d *appsv1.Deployment) {
	p := field.NewPath("spec")
	v.nonNegative(p.Child("replicas"), d.Spec.Replicas)
	v.nonNegative(p.Child("minReadySeconds"), &d.Spec.MinReadySeconds)
	v.nonNegative(p.Child("revisionHistoryLimit"), d.Spec.RevisionHistoryLimit)
	if pd := d.Spec.ProgressDeadlineSeconds; pd != nil && *pd <= d.Spec.MinReadySeconds {
		v.errorf(p.Child("progressDeadlineSeconds"), "invalid value %d: must be greater than minReadySeconds", *pd)
	}
	sp := p.Child("strategy")
	if ru := d.Spec.Strategy.RollingUpdate; v.strategy(sp, string(d.Spec.Strategy.Type), "Recreate", ru != nil) {
		v.rollingUpdate(ru.MaxUnavailable, ru.MaxSurge, sp.Child("rollingUpdate"))
	}
	v.selectorAndTemplate(d.Spec.Selector, &d.Spec.Template, p, "Deployment")
}

// strategy checks the type of a workload's update strategy (RollingUpdate or other) and
// that rollingUpdate, when given, goes with RollingUpdate. It reports whether to check
// rollingUpdate.
func (v *validator) strategy(p *field.Path, typ, other string, rolling bool) bool {
	v.oneOf(p.Child("type"), typ, "RollingUpdate", other)
	if rolling && typ == other {
		v.errorf(p.Child("rollingUpdate"), "may not be given when type is %s", other)
		return false
	}
	return rolling
}

// rollingUpdate checks maxUnavailable and maxSurge: a count or a percentage, not both 0.
func (v *validator) rollingUpdate(maxUnavailable, maxSurge *intstr.IntOrString, p *field.Path) {
	unavailable := v.countOrPercent(maxUnavailable, p.Child("maxUnavailable"))
	surge := v.countOrPercent(maxSurge, p.Child("maxSurge"))
	if maxUnavailable != nil && maxUnavailable.Type == intstr.String && unavailable > 100 {
		v.errorf(p.Child("maxUnavailable"), "invalid value %q: must not be greater than 100%%", maxUnavailable.StrVal)
	}
	if maxUnavailable != nil && maxSurge != nil && unavailable == 0 && surge == 0 {
		v.errorf(p.Child("maxUnavailable"), "may not be 0 when maxSurge is 0: the rollout could never progress")
	}
}

// countOrPercent checks an int-or-percent value and returns its number (-1 when invalid).
func (v *validator) countOrPercent(x *intstr.IntOrString, p *field.Path) int {
	if x == nil {
		return -1
	}
	if x.Type == intstr.Int {
		if x.IntVal < 0 {
			v.errorf(p, "invalid value %d: must be greater than or equal to 0", x.IntVal)
		}
		return int(x.IntVal)
	}
	if msgs := validation.IsValidPercent(x.StrVal); len(msgs) > 0 {
		v.check(p, x.StrVal, msgs)
		return -1
	}
	var n int
	fmt.Sscanf(x.StrVal, "%d%%", &n)
	return n
}

func (v *validator) statefulSet(s *appsv1.StatefulSet) {
	p := field.NewPath("spec")
	v.nonNegative(p.Child("replicas"), s.Spec.Replicas)
	v.nonNegative(p.Child("minReadySeconds"), &s.Spec.MinReadySeconds)
	v.nonNegative(p.Child("revisionHistoryLimit"), s.Spec.RevisionHistoryLimit)
	if s.Spec.ServiceName == "" {
		v.errorf(p.Child("serviceName"), "serviceName is required: the headless Service that gives the pods their DNS names (NAME-0.SERVICE)")
	} else {
		v.check(p.Child("serviceName"), s.Spec.ServiceName, validation.IsDNS1123Label(s.Spec.ServiceName))
	}
	v.oneOf(p.Child("podManagementPolicy"), string(s.Spec.PodManagementPolicy), "OrderedReady", "Parallel")
	up := p.Child("updateStrategy")
	if ru := s.Spec.UpdateStrategy.RollingUpdate; v.strategy(up, string(s.Spec.UpdateStrategy.Type), "OnDelete", ru != nil) {
		v.nonNegative(up.Child("rollingUpdate", "partition"), ru.Partition)
	}
	v.claimVolumes = map[string]bool{}
	for i := range s.Spec.VolumeClaimTemplates {
		c := &s.Spec.VolumeClaimTemplates[i]
		cp := p.Child("volumeClaimTemplates").Index(i)
		v.uniqueLabel(cp.Child("metadata", "name"), c.Name, "volume claim template", v.claimVolumes)
		v.pvcSpec(&c.Spec, cp.Child("spec"))
	}
	v.selectorAndTemplate(s.Spec.Selector, &s.Spec.Template, p, "StatefulSet")
}

func (v *validator) daemonSet(d *appsv1.DaemonSet) {
	p := field.NewPath("spec")
	v.nonNegative(p.Child("minReadySeconds"), &d.Spec.MinReadySeconds)
	v.nonNegative(p.Child("revisionHistoryLimit"), d.Spec.RevisionHistoryLimit)
	up := p.Child("updateStrategy")
	if ru := d.Spec.UpdateStrategy.RollingUpdate; v.strategy(up, string(d.Spec.UpdateStrategy.Type), "OnDelete", ru != nil) {
		v.rollingUpdate(ru.MaxUnavailable, ru.MaxSurge, up.Child("rollingUpdate"))
	}
	v.selectorAndTemplate(d.Spec.Selector, &d.Spec.Template, p, "DaemonSet")
}

func (v *validator) jobSpec(s *batchv1.JobSpec, p *field.Path) {
	v.nonNegative(p.Child("parallelism"), s.Parallelism)
	v.nonNegative(p.Child("completions"), s.Completions)
	v.nonNegative(p.Child("backoffLimit"), s.BackoffLimit)
	v.nonNegative(p.Child("ttlSecondsAfterFinished"), s.TTLSecondsAfterFinished)
	v.positive(p.Child("activeDeadlineSeconds"), s.ActiveDeadlineSeconds)
	if r := s.PodReplacementPolicy; r != nil {
		v.oneOf(p.Child("podReplacementPolicy"), string(*r), string(batchv1.TerminatingOrFailed), string(batchv1.Failed))
	}
	if m := s.ManagedBy; m != nil && *m != batchv1.JobControllerName {
		v.unsupported(p.Child("managedBy"), "managedBy %q: no other controller runs Jobs in skiff; leave it unset", *m)
	}
	if m := s.CompletionMode; m != nil && *m != batchv1.NonIndexedCompletion {
		if *m == batchv1.IndexedCompletion {
			v.unsupported(p.Child("completionMode"), "completionMode Indexed; use NonIndexed")
		} else {
			v.oneOf(p.Child("completionMode"), string(*m), "NonIndexed", "Indexed")
		}
	}
	tp := p.Child("template")
	v.templateMeta(&s.Template.ObjectMeta, tp.Child("metadata"))
	v.podSpec(&s.Template.Spec, tp.Child("spec"), jobRestart)
}

func (v *validator) cronJob(c *batchv1.CronJob) {
	p := field.NewPath("spec")
	v.schedule(c.Spec.Schedule, p.Child("schedule"))
	if tz := c.Spec.TimeZone; tz != nil {
		switch _, err := time.LoadLocation(*tz); {
		case *tz == "":
			v.errorf(p.Child("timeZone"), "timeZone must be unset or a time zone name")
		case strings.EqualFold(*tz, "Local"):
			v.errorf(p.Child("timeZone"), "invalid value %q: timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones", *tz)
		case err != nil:
			v.errorf(p.Child("timeZone"), "invalid value %q: unknown time zone", *tz)
		}
	}
	if c.Spec.ConcurrencyPolicy != "" {
		v.oneOf(p.Child("concurrencyPolicy"), string(c.Spec.ConcurrencyPolicy), "Allow", "Forbid", "Replace")
	}
	if sd := c.Spec.StartingDeadlineSeconds; sd != nil && *sd < 0 {
		v.errorf(p.Child("startingDeadlineSeconds"), "invalid value %d: must be greater than or equal to 0", *sd)
	}
	v.nonNegative(p.Child("successfulJobsHistoryLimit"), c.Spec.SuccessfulJobsHistoryLimit)
	v.nonNegative(p.Child("failedJobsHistoryLimit"), c.Spec.FailedJobsHistoryLimit)
	jp := p.Child("jobTemplate")
	v.templateMeta(&c.Spec.JobTemplate.ObjectMeta, jp.Child("metadata"))
	v.jobSpec(&c.Spec.JobTemplate.Spec, jp.Child("spec"))
}

// schedule checks the shape of a cron schedule: five fields or a @descriptor.
func (v *validator) schedule(s string, p *field.Path) {
	if s == "" {
		v.errorf(p, "schedule is required")
		return
	}
	if strings.Contains(s, "TZ") {
		v.errorf(p, "invalid value %q: TZ and CRON_TZ are not allowed in the schedule; use spec.timeZone", s)
		return
	}
	if strings.HasPrefix(s, "@") {
		switch d, _, _ := strings.Cut(s, " "); d {
		case "@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@every":
			return
		}
		v.errorf(p, "invalid value %q: unknown descriptor; use @yearly, @monthly, @weekly, @daily, @hourly or five fields", s)
		return
	}
	fields := strings.Fields(s)
	if len(fields) != 5 {
		v.errorf(p, "invalid value %q: a schedule has five fields (minute hour day-of-month month day-of-week), got %d", s, len(fields))
		return
	}
	for _, f := range fields {
		if strings.Trim(f, "0123456789*,/-?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") != "" {
			v.errorf(p, "invalid value %q: field %q has characters a cron schedule cannot have", s, f)
			return
		}
	}
	// The parser the CronJob controller uses, as the API server validates with it.
	if _, err := cron.ParseStandard(s); err != nil {
		v.errorf(p, "invalid value %q: %v", s, err)
	}
}

func (v *validator) service(s *corev1.ServiceSpec) {
	p := field.NewPath("spec")
	v.oneOf(p.Child("type"), string(s.Type), "ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
	headless := s.ClusterIP == corev1.ClusterIPNone
	switch {
	case s.Type == corev1.ServiceTypeExternalName:
		name := strings.TrimSuffix(s.ExternalName, ".")
		if name == "" {
			v.errorf(p.Child("externalName"), "externalName is required for type ExternalName")
		} else {
			v.check(p.Child("externalName"), s.ExternalName, validation.IsDNS1123Subdomain(name))
		}
		if s.ClusterIP != "" {
			v.errorf(p.Child("clusterIP"), "may not be set for type ExternalName")
		}
	case len(s.Ports) == 0 && !headless:
		v.errorf(p.Child("ports"), "at least one port is required (or clusterIP: None for a headless Service)")
	}
	if s.ClusterIP != "" && !headless {
		v.ip(p.Child("clusterIP"), s.ClusterIP)
	}
	if headless && s.Type != corev1.ServiceTypeClusterIP {
		v.errorf(p.Child("clusterIP"), "clusterIP None (headless) needs type ClusterIP, not %s", s.Type)
	}
	for i, ip := range s.ClusterIPs {
		if i == 0 && s.ClusterIP != "" && ip != s.ClusterIP {
			v.errorf(p.Child("clusterIPs").Index(0), "invalid value %q: must match clusterIP %q", ip, s.ClusterIP)
		} else if ip != corev1.ClusterIPNone {
			v.ip(p.Child("clusterIPs").Index(i), ip)
		}
	}
	for i, ip := range s.ExternalIPs {
		v.ip(p.Child("externalIPs").Index(i), ip)
	}
	v.list(metavalidation.ValidateLabels(s.Selector, p.Child("selector")))
	v.oneOf(p.Child("sessionAffinity"), string(s.SessionAffinity), "None", "ClientIP")
	if c := s.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
		if t := *c.ClientIP.TimeoutSeconds; t <= 0 || t > maxClientIPAffinitySeconds {
			v.errorf(p.Child("sessionAffinityConfig", "clientIP", "timeoutSeconds"), "invalid value %d: must be between 1 and %d", t, maxClientIPAffinitySeconds)
		}
	}
	external := s.Type == corev1.ServiceTypeNodePort || s.Type == corev1.ServiceTypeLoadBalancer
	if s.ExternalTrafficPolicy != "" {
		if !external {
			v.errorf(p.Child("externalTrafficPolicy"), "may only be set when type is NodePort or LoadBalancer")
		} else {
			v.oneOf(p.Child("externalTrafficPolicy"), string(s.ExternalTrafficPolicy), "Cluster", "Local")
		}
	}
	v.servicePorts(s.Ports, external, p.Child("ports"))
}

// maxClientIPAffinitySeconds is the longest ClientIP session affinity: a day.
const maxClientIPAffinitySeconds = 86400

func (v *validator) servicePorts(ports []corev1.ServicePort, external bool, p *field.Path) {
	names := map[string]bool{}
	nodePorts := map[string]bool{}
	for i, sp := range ports {
		ip := p.Index(i)
		switch {
		case sp.Name == "" && len(ports) > 1:
			v.errorf(ip.Child("name"), "name is required when a Service has more than one port")
		case sp.Name != "":
			v.check(ip.Child("name"), sp.Name, validation.IsDNS1123Label(sp.Name))
			if names[sp.Name] {
				v.errorf(ip.Child("name"), "duplicate port name %q", sp.Name)
			}
			names[sp.Name] = true
		}
		v.portNumber(ip.Child("port"), sp.Port, true)
		v.protocol(ip.Child("protocol"), sp.Protocol)
		if sp.TargetPort != intstr.FromInt32(0) { // 0: defaulted from an invalid port, reported above
			v.intOrStringPort(ip.Child("targetPort"), sp.TargetPort)
		}
		if sp.NodePort != 0 {
			if !external {
				v.errorf(ip.Child("nodePort"), "may only be set when type is NodePort or LoadBalancer")
			}
			v.portNumber(ip.Child("nodePort"), sp.NodePort, true)
			key := fmt.Sprintf("%d/%s", sp.NodePort, sp.Protocol)
			if nodePorts[key] {
				v.errorf(ip.Child("nodePort"), "duplicate nodePort %s", key)
			}
			nodePorts[key] = true
		}
	}
}

func (v *validator) endpoints(e *corev1.Endpoints) {
	for i, s := range e.Subsets {
		sp := field.NewPath("subsets").Index(i)
		for j, a := range s.Addresses {
			v.ip(sp.Child("addresses").Index(j).Child("ip"), a.IP)
		}
		for j, a := range s.NotReadyAddresses {
			v.ip(sp.Child("notReadyAddresses").Index(j).Child("ip"), a.IP)
		}
		for j, port := range s.Ports {
			pp := sp.Child("ports").Index(j)
			if port.Name == "" && len(s.Ports) > 1 {
				v.errorf(pp.Child("name"), "name is required when a subset has more than one port")
			}
			v.portNumber(pp.Child("port"), port.Port, true)
			v.protocol(pp.Child("protocol"), port.Protocol)
		}
	}
}

func (v *validator) ingress(s *networkingv1.IngressSpec) {
	p := field.NewPath("spec")
	if c := s.IngressClassName; c != nil {
		v.check(p.Child("ingressClassName"), *c, validation.IsDNS1123Subdomain(*c))
	}
	if s.DefaultBackend == nil && len(s.Rules) == 0 {
		v.errorf(p, "either defaultBackend or rules must be given")
	}
	if s.DefaultBackend != nil {
		v.ingressBackend(s.DefaultBackend, p.Child("defaultBackend"))
	}
	for i, r := range s.Rules {
		rp := p.Child("rules").Index(i)
		if r.Host != "" {
			v.ingressHost(rp.Child("host"), r.Host)
		}
		if r.HTTP == nil {
			continue
		}
		if len(r.HTTP.Paths) == 0 {
			v.errorf(rp.Child("http", "paths"), "at least one path is required")
		}
		for j, path := range r.HTTP.Paths {
			pp := rp.Child("http", "paths").Index(j)
			if path.PathType == nil {
				v.errorf(pp.Child("pathType"), "pathType is required: Exact, Prefix or ImplementationSpecific")
			} else {
				v.oneOf(pp.Child("pathType"), string(*path.PathType), "Exact", "Prefix", "ImplementationSpecific")
			}
			if path.Path != "" && !strings.HasPrefix(path.Path, "/") || path.Path == "" && path.PathType != nil && *path.PathType != networkingv1.PathTypeImplementationSpecific {
				v.errorf(pp.Child("path"), "invalid value %q: must be an absolute path", path.Path)
			} else if path.PathType != nil && *path.PathType != networkingv1.PathTypeImplementationSpecific {
				v.ingressPath(pp.Child("path"), path.Path)
			}
			v.ingressBackend(&path.Backend, pp.Child("backend"))
		}
	}
	for i, t := range s.TLS {
		tp := p.Child("tls").Index(i)
		for j, h := range t.Hosts {
			v.ingressHost(tp.Child("hosts").Index(j), h)
		}
		if t.SecretName != "" {
			v.check(tp.Child("secretName"), t.SecretName, validation.IsDNS1123Subdomain(t.SecretName))
		}
	}
}

// ingressPath applies the API server's checks to an Exact or Prefix path.
func (v *validator) ingressPath(p *field.Path, path string) {
	for _, seq := range []string{"//", "/./", "/../", "%2f", "%2F"} {
		if strings.Contains(path, seq) {
			v.errorf(p, "invalid value %q: must not contain '%s'", path, seq)
		}
	}
	for _, suffix := range []string{"/..", "/."} {
		if strings.HasSuffix(path, suffix) {
			v.errorf(p, "invalid value %q: cannot end with '%s'", path, suffix)
		}
	}
}

func (v *validator) ingressHost(p *field.Path, host string) {
	if _, err := netip.ParseAddr(host); err == nil {
		v.errorf(p, "invalid value %q: must be a DNS name, not an IP address", host)
		return
	}
	if strings.HasPrefix(host, "*.") {
		v.check(p, host, validation.IsWildcardDNS1123Subdomain(host))
		return
	}
	v.check(p, host, validation.IsDNS1123Subdomain(host))
}

func (v *validator) ingressBackend(b *networkingv1.IngressBackend, p *field.Path) {
	svc := b.Service
	if svc == nil {
		if b.Resource == nil {
			v.errorf(p.Child("service"), "service is required")
		}
		return
	}
	v.check(p.Child("service", "name"), svc.Name, validation.IsDNS1035Label(svc.Name))
	pp := p.Child("service", "port")
	switch {
	case svc.Port.Name != "" && svc.Port.Number != 0:
		v.errorf(pp, "give either port.name or port.number, not both")
	case svc.Port.Name != "":
		v.check(pp.Child("name"), svc.Port.Name, validation.IsValidPortName(svc.Port.Name))
	default:
		v.portNumber(pp.Child("number"), svc.Port.Number, true)
	}
}

func (v *validator) configMap(c *corev1.ConfigMap) {
	for k := range c.Data {
		v.check(field.NewPath("data").Key(k), k, validation.IsConfigMapKey(k))
	}
	for k := range c.BinaryData {
		v.check(field.NewPath("binaryData").Key(k), k, validation.IsConfigMapKey(k))
		if _, dup := c.Data[k]; dup {
			v.errorf(field.NewPath("binaryData").Key(k), "key %q is also in data", k)
		}
	}
}

// secretKeys are the keys each Secret type requires.
var secretKeys = map[corev1.SecretType][]string{
	corev1.SecretTypeTLS:              {corev1.TLSCertKey, corev1.TLSPrivateKeyKey},
	corev1.SecretTypeDockerConfigJson: {corev1.DockerConfigJsonKey},
	corev1.SecretTypeDockercfg:        {corev1.DockerConfigKey},
	corev1.SecretTypeSSHAuth:          {corev1.SSHAuthPrivateKey},
}

func (v *validator) secret(s *corev1.Secret) {
	for k := range s.Data {
		v.check(field.NewPath("data").Key(k), k, validation.IsConfigMapKey(k))
	}
	for _, k := range secretKeys[s.Type] {
		if _, ok := s.Data[k]; !ok {
			v.errorf(field.NewPath("data").Key(k), "a Secret of type %s needs key %q", s.Type, k)
		}
	}
	if s.Type == corev1.SecretTypeBasicAuth && len(s.Data[corev1.BasicAuthUsernameKey]) == 0 && len(s.Data[corev1.BasicAuthPasswordKey]) == 0 {
		v.errorf(field.NewPath("data"), "a Secret of type %s needs key %q or %q", s.Type, corev1.BasicAuthUsernameKey, corev1.BasicAuthPasswordKey)
	}
}

var accessModes = []string{"ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod"}

func (v *validator) accessModes(modes []corev1.PersistentVolumeAccessMode, p *field.Path) {
	if len(modes) == 0 {
		v.errorf(p, "at least one access mode is required")
	}
	for i, m := range modes {
		v.oneOf(p.Index(i), string(m), accessModes...)
	}
}

func (v *validator) volumeMode(m *corev1.PersistentVolumeMode, p *field.Path) {
	if m != nil && *m == corev1.PersistentVolumeBlock {
		v.unsupported(p, "volumeMode Block; skiff provides filesystem volumes only")
	} else if m != nil {
		v.oneOf(p, string(*m), "Filesystem", "Block")
	}
}

func (v *validator) pvcSpec(s *corev1.PersistentVolumeClaimSpec, p *field.Path) {
	v.accessModes(s.AccessModes, p.Child("accessModes"))
	storage, ok := s.Resources.Requests[corev1.ResourceStorage]
	switch {
	case !ok:
		v.errorf(p.Child("resources", "requests", "storage"), "a storage request is required")
	case storage.Sign() <= 0:
		v.errorf(p.Child("resources", "requests", "storage"), "invalid value %q: must be greater than 0", storage.String())
	}
	if s.Selector != nil {
		v.list(metavalidation.ValidateLabelSelector(s.Selector, metavalidation.LabelSelectorValidationOptions{}, p.Child("selector")))
	}
	v.volumeMode(s.VolumeMode, p.Child("volumeMode"))
}

func (v *validator) persistentVolume(pv *corev1.PersistentVolume) {
	p := field.NewPath("spec")
	if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok {
		v.errorf(p.Child("capacity", "storage"), "capacity.storage is required")
	} else if q.Sign() <= 0 {
		v.errorf(p.Child("capacity", "storage"), "invalid value %q: must be greater than 0", q.String())
	}
	v.accessModes(pv.Spec.AccessModes, p.Child("accessModes"))
	if pv.Spec.PersistentVolumeReclaimPolicy != "" {
		v.oneOf(p.Child("persistentVolumeReclaimPolicy"), string(pv.Spec.PersistentVolumeReclaimPolicy), "Retain", "Delete", "Recycle")
	}
	v.volumeMode(pv.Spec.VolumeMode, p.Child("volumeMode"))
	switch n := countSources(pv.Spec.PersistentVolumeSource); {
	case n == 0:
		v.errorf(p, "a volume source is required: hostPath or local")
	case n > 1:
		v.errorf(p, "may not give more than one volume source")
	}
	if hp := pv.Spec.HostPath; hp != nil {
		v.hostPath(hp, p.Child("hostPath"))
	}
	if l := pv.Spec.Local; l != nil {
		if !strings.HasPrefix(l.Path, "/") {
			v.errorf(p.Child("local", "path"), "invalid value %q: must be an absolute path", l.Path)
		}
		if pv.Spec.NodeAffinity == nil || pv.Spec.NodeAffinity.Required == nil {
			v.errorf(p.Child("nodeAffinity"), "a local volume needs nodeAffinity.required: the node that has the directory")
		}
	}
}
