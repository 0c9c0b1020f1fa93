package main

// Defaulting, as kube-apiserver does it: functions registered on the scheme,
// which the apiserver library runs on every decoded object (create, update,
// every patch type, server-side apply, reads from etcd) — so, as upstream,
// they run before storage and before the field manager records who owns what
// (a `kubectl create` owns the defaulted fields, a server-side apply does not).
//
// Written from upstream's rules in k8s.io/kubernetes pkg/apis/{core,apps,batch,
// networking,rbac}/v1/defaults.go and their generated zz_generated.defaults.go
// (Debian does not package k8s.io/kubernetes). README "The test Kubernetes API
// server" lists exactly what is defaulted; exotic volume plugins (iSCSI, RBD,
// AzureDisk, ScaleIO), pod-level resources and alpha features are not.
//
// The registry's own create-time work that real apps meet is in
// prepareService/prepareJob (a Service's clusterIP, ipFamilies, nodePorts; a
// Job's generated selector and labels), called from the strategies in core.go.

import (
	"fmt"
	"math/rand"
	"reflect"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func registerDefaults(s *runtime.Scheme) {
	add := func(obj runtime.Object, f func(interface{})) { s.AddTypeDefaultingFunc(obj, f) }
	add(&appsv1.Deployment{}, func(o interface{}) { defaultDeployment(o.(*appsv1.Deployment)) })
	add(&appsv1.StatefulSet{}, func(o interface{}) { defaultStatefulSet(o.(*appsv1.StatefulSet)) })
	add(&appsv1.DaemonSet{}, func(o interface{}) { defaultDaemonSet(o.(*appsv1.DaemonSet)) })
	add(&appsv1.ReplicaSet{}, func(o interface{}) { defaultReplicaSet(o.(*appsv1.ReplicaSet)) })
	add(&batchv1.Job{}, func(o interface{}) { defaultJob(o.(*batchv1.Job)) })
	add(&batchv1.CronJob{}, func(o interface{}) { defaultCronJob(o.(*batchv1.CronJob)) })
	add(&corev1.Pod{}, func(o interface{}) { defaultPod(o.(*corev1.Pod)) })
	add(&corev1.Service{}, func(o interface{}) { defaultService(o.(*corev1.Service)) })
	add(&corev1.Secret{}, func(o interface{}) { defaultSecret(o.(*corev1.Secret)) })
	add(&corev1.Namespace{}, func(o interface{}) { defaultNamespace(o.(*corev1.Namespace)) })
	add(&corev1.PersistentVolumeClaim{}, func(o interface{}) { defaultPVC(o.(*corev1.PersistentVolumeClaim)) })
	add(&networkingv1.NetworkPolicy{}, func(o interface{}) { defaultNetworkPolicy(o.(*networkingv1.NetworkPolicy)) })
	add(&rbacv1.RoleBinding{}, func(o interface{}) {
		rb := o.(*rbacv1.RoleBinding)
		defaultRoleRef(&rb.RoleRef)
		defaultSubjects(rb.Subjects)
	})
	add(&rbacv1.ClusterRoleBinding{}, func(o interface{}) {
		rb := o.(*rbacv1.ClusterRoleBinding)
		defaultRoleRef(&rb.RoleRef)
		defaultSubjects(rb.Subjects)
	})
	// Ingress has no defaults upstream (networking/v1: pathType is required).
}

func int32p(v int32) *int32 { return &v }
func int64p(v int64) *int64 { return &v }

func defaultDeployment(d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		d.Spec.Replicas = int32p(1)
	}
	st := &d.Spec.Strategy
	if st.Type == "" {
		st.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if st.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if st.RollingUpdate == nil {
			st.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if st.RollingUpdate.MaxUnavailable == nil {
			v := intstr.FromString("25%")
			st.RollingUpdate.MaxUnavailable = &v
		}
		if st.RollingUpdate.MaxSurge == nil {
			v := intstr.FromString("25%")
			st.RollingUpdate.MaxSurge = &v
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = int32p(10)
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		d.Spec.ProgressDeadlineSeconds = int32p(600)
	}
	defaultPodSpec(&d.Spec.Template.Spec)
}

func defaultStatefulSet(s *appsv1.StatefulSet) {
	if s.Spec.PodManagementPolicy == "" {
		s.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	if s.Spec.UpdateStrategy.Type == "" {
		s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		if s.Spec.UpdateStrategy.RollingUpdate == nil {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
	}
	if s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType &&
		s.Spec.UpdateStrategy.RollingUpdate != nil && s.Spec.UpdateStrategy.RollingUpdate.Partition == nil {
		s.Spec.UpdateStrategy.RollingUpdate.Partition = int32p(0)
	}
	// StatefulSetAutoDeletePVC is GA (on by default)
	if s.Spec.PersistentVolumeClaimRetentionPolicy == nil {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted == "" {
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled == "" {
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if s.Spec.Replicas == nil {
		s.Spec.Replicas = int32p(1)
	}
	if s.Spec.RevisionHistoryLimit == nil {
		s.Spec.RevisionHistoryLimit = int32p(10)
	}
	defaultPodSpec(&s.Spec.Template.Spec)
	for i := range s.Spec.VolumeClaimTemplates {
		defaultPVC(&s.Spec.VolumeClaimTemplates[i])
	}
}

func defaultDaemonSet(d *appsv1.DaemonSet) {
	us := &d.Spec.UpdateStrategy
	if us.Type == "" {
		us.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if us.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if us.RollingUpdate == nil {
			us.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if us.RollingUpdate.MaxUnavailable == nil {
			v := intstr.FromInt32(1)
			us.RollingUpdate.MaxUnavailable = &v
		}
		if us.RollingUpdate.MaxSurge == nil {
			v := intstr.FromInt32(0)
			us.RollingUpdate.MaxSurge = &v
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		d.Spec.RevisionHistoryLimit = int32p(10)
	}
	defaultPodSpec(&d.Spec.Template.Spec)
}

func defaultReplicaSet(r *appsv1.ReplicaSet) {
	if r.Spec.Replicas == nil {
		r.Spec.Replicas = int32p(1)
	}
	defaultPodSpec(&r.Spec.Template.Spec)
}

func defaultJob(j *batchv1.Job) {
	if j.Spec.Completions == nil && j.Spec.Parallelism == nil {
		j.Spec.Completions = int32p(1)
		j.Spec.Parallelism = int32p(1)
	}
	if j.Spec.Parallelism == nil {
		j.Spec.Parallelism = int32p(1)
	}
	if j.Spec.BackoffLimit == nil {
		j.Spec.BackoffLimit = int32p(6)
	}
	if labels := j.Spec.Template.Labels; labels != nil && len(j.Labels) == 0 {
		j.Labels = labels
	}
	if j.Spec.CompletionMode == nil {
		m := batchv1.NonIndexedCompletion
		j.Spec.CompletionMode = &m
	}
	if j.Spec.Suspend == nil {
		f := false
		j.Spec.Suspend = &f
	}
	// JobPodReplacementPolicy is GA (on by default)
	if j.Spec.PodReplacementPolicy == nil {
		p := batchv1.TerminatingOrFailed
		if j.Spec.PodFailurePolicy != nil {
			p = batchv1.Failed
		}
		j.Spec.PodReplacementPolicy = &p
	}
	if pfp := j.Spec.PodFailurePolicy; pfp != nil {
		for i := range pfp.Rules {
			for k := range pfp.Rules[i].OnPodConditions {
				if c := &pfp.Rules[i].OnPodConditions[k]; c.Status == "" {
					c.Status = corev1.ConditionTrue
				}
			}
		}
	}
	defaultPodSpec(&j.Spec.Template.Spec)
}

func defaultCronJob(c *batchv1.CronJob) {
	if c.Spec.ConcurrencyPolicy == "" {
		c.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
	}
	if c.Spec.Suspend == nil {
		f := false
		c.Spec.Suspend = &f
	}
	if c.Spec.SuccessfulJobsHistoryLimit == nil {
		c.Spec.SuccessfulJobsHistoryLimit = int32p(3)
	}
	if c.Spec.FailedJobsHistoryLimit == nil {
		c.Spec.FailedJobsHistoryLimit = int32p(1)
	}
	// upstream defaults only the pod template inside jobTemplate, not the Job fields
	defaultPodSpec(&c.Spec.JobTemplate.Spec.Template.Spec)
}

func defaultPod(p *corev1.Pod) {
	for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
		for i := range cs {
			r := &cs[i].Resources
			if r.Limits == nil {
				continue
			}
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			for k, v := range r.Limits {
				if _, ok := r.Requests[k]; !ok {
					r.Requests[k] = v.DeepCopy()
				}
			}
		}
	}
	if p.Spec.EnableServiceLinks == nil {
		t := corev1.DefaultEnableServiceLinks
		p.Spec.EnableServiceLinks = &t
	}
	if p.Spec.HostNetwork {
		for _, cs := range [][]corev1.Container{p.Spec.Containers, p.Spec.InitContainers} {
			for i := range cs {
				for j := range cs[i].Ports {
					if cs[i].Ports[j].HostPort == 0 {
						cs[i].Ports[j].HostPort = cs[i].Ports[j].ContainerPort
					}
				}
			}
		}
	}
	defaultPodSpec(&p.Spec)
}

// defaultPodSpec is SetDefaults_PodSpec plus what the generated defaulters do below it
// (volumes, containers, probes, ports, resources) — the same for Pods and every pod template.
func defaultPodSpec(s *corev1.PodSpec) {
	if s.DNSPolicy == "" {
		s.DNSPolicy = corev1.DNSClusterFirst
	}
	if s.RestartPolicy == "" {
		s.RestartPolicy = corev1.RestartPolicyAlways
	}
	if s.SecurityContext == nil {
		s.SecurityContext = &corev1.PodSecurityContext{}
	}
	if s.TerminationGracePeriodSeconds == nil {
		s.TerminationGracePeriodSeconds = int64p(corev1.DefaultTerminationGracePeriodSeconds)
	}
	if s.SchedulerName == "" {
		s.SchedulerName = corev1.DefaultSchedulerName
	}
	for i := range s.Volumes {
		defaultVolume(&s.Volumes[i])
	}
	for i := range s.InitContainers {
		defaultContainer(&s.InitContainers[i])
	}
	for i := range s.Containers {
		defaultContainer(&s.Containers[i])
	}
	for i := range s.EphemeralContainers {
		defaultContainer((*corev1.Container)(&s.EphemeralContainers[i].EphemeralContainerCommon))
	}
	defaultResourceList(s.Overhead)
}

func defaultContainer(c *corev1.Container) {
	if c.ImagePullPolicy == "" {
		if imageTag(c.Image) == "latest" {
			c.ImagePullPolicy = corev1.PullAlways
		} else {
			c.ImagePullPolicy = corev1.PullIfNotPresent
		}
	}
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil && vf.FieldRef != nil && vf.FieldRef.APIVersion == "" {
			vf.FieldRef.APIVersion = "v1"
		}
	}
	defaultResourceList(c.Resources.Limits)
	defaultResourceList(c.Resources.Requests)
	for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		if p.TimeoutSeconds == 0 {
			p.TimeoutSeconds = 1
		}
		if p.PeriodSeconds == 0 {
			p.PeriodSeconds = 10
		}
		if p.SuccessThreshold == 0 {
			p.SuccessThreshold = 1
		}
		if p.FailureThreshold == 0 {
			p.FailureThreshold = 3
		}
		defaultHTTPGet(p.HTTPGet)
		if p.GRPC != nil && p.GRPC.Service == nil {
			empty := ""
			p.GRPC.Service = &empty
		}
	}
	if l := c.Lifecycle; l != nil {
		for _, h := range []*corev1.LifecycleHandler{l.PostStart, l.PreStop} {
			if h != nil {
				defaultHTTPGet(h.HTTPGet)
			}
		}
	}
}

func defaultHTTPGet(h *corev1.HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = corev1.URISchemeHTTP
	}
}

// imageTag is the tag of an image reference as upstream's parsers.ParseImageName sees
// it: "latest" when there is neither tag nor digest, "" when there is only a digest.
func imageTag(image string) string {
	name, digest := image, ""
	if at := strings.Index(image, "@"); at >= 0 {
		name, digest = image[:at], image[at+1:]
	}
	last := name[strings.LastIndex(name, "/")+1:]
	if colon := strings.LastIndex(last, ":"); colon >= 0 {
		return last[colon+1:]
	}
	if digest != "" {
		return ""
	}
	return "latest"
}

// defaultResourceList rounds quantities up to milli precision, as upstream does.
func defaultResourceList(rl corev1.ResourceList) {
	for k, v := range rl {
		v.RoundUp(resource.Milli)
		rl[k] = v
	}
}

func defaultVolume(v *corev1.Volume) {
	if allNil(v.VolumeSource) {
		v.VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
	}
	mode := func(m **int32, def int32) {
		if *m == nil {
			*m = int32p(def)
		}
	}
	vs := &v.VolumeSource
	if vs.HostPath != nil && vs.HostPath.Type == nil {
		t := corev1.HostPathUnset
		vs.HostPath.Type = &t
	}
	if vs.Secret != nil {
		mode(&vs.Secret.DefaultMode, corev1.SecretVolumeSourceDefaultMode)
	}
	if vs.ConfigMap != nil {
		mode(&vs.ConfigMap.DefaultMode, corev1.ConfigMapVolumeSourceDefaultMode)
	}
	if vs.DownwardAPI != nil {
		mode(&vs.DownwardAPI.DefaultMode, corev1.DownwardAPIVolumeSourceDefaultMode)
		for i := range vs.DownwardAPI.Items {
			defaultFieldRef(vs.DownwardAPI.Items[i].FieldRef)
		}
	}
	if vs.Projected != nil {
		mode(&vs.Projected.DefaultMode, corev1.ProjectedVolumeSourceDefaultMode)
		for i := range vs.Projected.Sources {
			src := &vs.Projected.Sources[i]
			if src.DownwardAPI != nil {
				for k := range src.DownwardAPI.Items {
					defaultFieldRef(src.DownwardAPI.Items[k].FieldRef)
				}
			}
			if src.ServiceAccountToken != nil && src.ServiceAccountToken.ExpirationSeconds == nil {
				src.ServiceAccountToken.ExpirationSeconds = int64p(3600)
			}
		}
	}
	if vs.Ephemeral != nil && vs.Ephemeral.VolumeClaimTemplate != nil {
		defaultPVCSpec(&vs.Ephemeral.VolumeClaimTemplate.Spec)
	}
}

func allNil(vs corev1.VolumeSource) bool {
	v := reflect.ValueOf(vs)
	for i := 0; i < v.NumField(); i++ {
		if f := v.Field(i); f.Kind() == reflect.Ptr && !f.IsNil() {
			return false
		}
	}
	return true
}

func defaultFieldRef(f *corev1.ObjectFieldSelector) {
	if f != nil && f.APIVersion == "" {
		f.APIVersion = "v1"
	}
}

func defaultPVC(p *corev1.PersistentVolumeClaim) {
	if p.Status.Phase == "" {
		p.Status.Phase = corev1.ClaimPending
	}
	defaultPVCSpec(&p.Spec)
}

func defaultPVCSpec(s *corev1.PersistentVolumeClaimSpec) {
	if s.VolumeMode == nil {
		m := corev1.PersistentVolumeFilesystem
		s.VolumeMode = &m
	}
	defaultResourceList(s.Resources.Limits)
	defaultResourceList(s.Resources.Requests)
}

func defaultSecret(s *corev1.Secret) {
	if s.Type == "" {
		s.Type = corev1.SecretTypeOpaque
	}
	// Not a default upstream but its v1 -> internal conversion, which our identity conversions skip:
	// stringData is write-only, folded into data (its keys win) and never stored.
	if len(s.StringData) > 0 {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		for k, v := range s.StringData {
			s.Data[k] = []byte(v)
		}
		s.StringData = nil
	}
}

func defaultNamespace(n *corev1.Namespace) {
	if n.Name != "" {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[corev1.LabelMetadataName] = n.Name
	}
	if n.Status.Phase == "" {
		n.Status.Phase = corev1.NamespaceActive
	}
}

func defaultService(s *corev1.Service) {
	if s.Spec.SessionAffinity == "" {
		s.Spec.SessionAffinity = corev1.ServiceAffinityNone
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityNone {
		s.Spec.SessionAffinityConfig = nil
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		c := s.Spec.SessionAffinityConfig
		if c == nil || c.ClientIP == nil || c.ClientIP.TimeoutSeconds == nil {
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{
				ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: int32p(corev1.DefaultClientIPServiceAffinitySeconds)}}
		}
	}
	if s.Spec.Type == "" {
		s.Spec.Type = corev1.ServiceTypeClusterIP
	}
	for i := range s.Spec.Ports {
		p := &s.Spec.Ports[i]
		if p.Protocol == "" {
			p.Protocol = corev1.ProtocolTCP
		}
		if p.TargetPort == intstr.FromInt32(0) || p.TargetPort == intstr.FromString("") {
			p.TargetPort = intstr.FromInt32(p.Port)
		}
	}
	external := s.Spec.Type == corev1.ServiceTypeNodePort || s.Spec.Type == corev1.ServiceTypeLoadBalancer ||
		len(s.Spec.ExternalIPs) > 0
	if external && s.Spec.ExternalTrafficPolicy == "" {
		s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyCluster
	}
	if s.Spec.InternalTrafficPolicy == nil && (s.Spec.Type == corev1.ServiceTypeNodePort ||
		s.Spec.Type == corev1.ServiceTypeLoadBalancer || s.Spec.Type == corev1.ServiceTypeClusterIP) {
		p := corev1.ServiceInternalTrafficPolicyCluster
		s.Spec.InternalTrafficPolicy = &p
	}
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer && s.Spec.AllocateLoadBalancerNodePorts == nil {
		t := true
		s.Spec.AllocateLoadBalancerNodePorts = &t
	}
}

func defaultNetworkPolicy(n *networkingv1.NetworkPolicy) {
	if len(n.Spec.PolicyTypes) == 0 {
		n.Spec.PolicyTypes = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(n.Spec.Egress) != 0 {
			n.Spec.PolicyTypes = append(n.Spec.PolicyTypes, networkingv1.PolicyTypeEgress)
		}
	}
	tcp := func(ports []networkingv1.NetworkPolicyPort) {
		for i := range ports {
			if ports[i].Protocol == nil {
				p := corev1.ProtocolTCP
				ports[i].Protocol = &p
			}
		}
	}
	for i := range n.Spec.Ingress {
		tcp(n.Spec.Ingress[i].Ports)
	}
	for i := range n.Spec.Egress {
		tcp(n.Spec.Egress[i].Ports)
	}
}

func defaultRoleRef(r *rbacv1.RoleRef) {
	if r.APIGroup == "" {
		r.APIGroup = rbacv1.GroupName
	}
}

func defaultSubjects(subjects []rbacv1.Subject) {
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup == "" && (s.Kind == rbacv1.UserKind || s.Kind == rbacv1.GroupKind) {
			s.APIGroup = rbacv1.GroupName
		}
	}
}

// ---- the registries' create/update work (pkg/registry/core/service, pkg/registry/batch/job)

var (
	allocMu   sync.Mutex
	allocated = map[string]bool{}
)

// allocate picks an unused value from [lo, lo+n) (random start, as the real allocators do).
func allocate(kind string, lo, n int) int {
	allocMu.Lock()
	defer allocMu.Unlock()
	start := rand.Intn(n)
	for i := 0; i < n; i++ {
		v := lo + (start+i)%n
		if key := fmt.Sprintf("%s/%d", kind, v); !allocated[key] {
			allocated[key] = true
			return v
		}
	}
	return lo + start
}

// prepareService does what kube-apiserver's service REST does on create and update: a
// ClusterIP from 10.96.0.0/12 (kept across updates that omit it), single-stack IPv4, node
// ports for NodePort/LoadBalancer Services (kept across updates that omit them).
func prepareService(s *corev1.Service, old *corev1.Service) {
	if old != nil {
		if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) == 0 {
			s.Spec.ClusterIP, s.Spec.ClusterIPs = old.Spec.ClusterIP, old.Spec.ClusterIPs
		}
		if s.Spec.IPFamilyPolicy == nil {
			s.Spec.IPFamilyPolicy = old.Spec.IPFamilyPolicy
		}
		if len(s.Spec.IPFamilies) == 0 {
			s.Spec.IPFamilies = old.Spec.IPFamilies
		}
		for i := range s.Spec.Ports {
			p := &s.Spec.Ports[i]
			for _, o := range old.Spec.Ports {
				if p.NodePort == 0 && o.Port == p.Port && o.Protocol == p.Protocol {
					p.NodePort = o.NodePort
				}
			}
		}
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		return
	}
	if s.Spec.ClusterIP == "" && len(s.Spec.ClusterIPs) > 0 {
		s.Spec.ClusterIP = s.Spec.ClusterIPs[0]
	}
	if s.Spec.ClusterIP == "" {
		n := allocate("ip", 2, 1<<20-3) // 10.96.0.2 … 10.111.255.254
		s.Spec.ClusterIP = fmt.Sprintf("10.%d.%d.%d", 96+n>>16, (n>>8)&255, n&255)
	}
	if len(s.Spec.ClusterIPs) == 0 {
		s.Spec.ClusterIPs = []string{s.Spec.ClusterIP}
	}
	if s.Spec.IPFamilyPolicy == nil {
		p := corev1.IPFamilyPolicySingleStack
		s.Spec.IPFamilyPolicy = &p
	}
	if len(s.Spec.IPFamilies) == 0 {
		s.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	}
	if s.Spec.Type == corev1.ServiceTypeNodePort || (s.Spec.Type == corev1.ServiceTypeLoadBalancer &&
		(s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts)) {
		for i := range s.Spec.Ports {
			if s.Spec.Ports[i].NodePort == 0 {
				s.Spec.Ports[i].NodePort = int32(allocate("port", 30000, 2768))
			}
		}
	}
}

// prepareJob generates a Job's selector and the matching pod template labels on create,
// unless spec.manualSelector is true (pkg/registry/batch/job generateSelector).
func prepareJob(j *batchv1.Job) {
	if j.Spec.ManualSelector != nil && *j.Spec.ManualSelector {
		return
	}
	uid := string(j.UID) // set before PrepareForCreate (FillObjectMetaSystemFields)
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	for k, v := range map[string]string{
		"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": j.Name,
		"controller-uid": uid, "job-name": j.Name,
	} {
		if _, ok := j.Spec.Template.Labels[k]; !ok {
			j.Spec.Template.Labels[k] = v
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"batch.kubernetes.io/controller-uid": uid}}
	}
}
