package main

// The built-in kinds, served by plain k8s.io/apiserver generic registries:
// real etcd storage, watch, resourceVersion, server-side apply (managedFields,
// conflicts), strategic-merge/JSON/merge patch, dry-run, status and scale
// subresources, and upstream's defaulting (defaults.go). No validation, no
// admission, no controllers.

import (
	"context"
	"fmt"
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/conversion"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/registry/generic"
	genericregistry "k8s.io/apiserver/pkg/registry/generic/registry"
	"k8s.io/apiserver/pkg/registry/rest"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/storage/names"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
)

var (
	coreScheme = runtime.NewScheme()
	coreCodecs = serializer.NewCodecFactory(coreScheme)
)

type kindSpec struct {
	gv         schema.GroupVersion
	resource   string
	obj, list  runtime.Object
	namespaced bool
	status     bool // has a /status subresource (and .status is reset on the main resource)
	scale      bool // has a /scale subresource (spec.replicas, spec.selector, status.replicas)
}

var (
	core  = corev1.SchemeGroupVersion
	apps  = appsv1.SchemeGroupVersion
	batch = batchv1.SchemeGroupVersion
	netw  = networkingv1.SchemeGroupVersion
	rbac  = rbacv1.SchemeGroupVersion
	coord = coordinationv1.SchemeGroupVersion
)

// To serve another kind: add a line here, add its API package to
// build.sh's OPENAPI_PKGS (and AddToScheme below) if it is a new group.
var coreKinds = []kindSpec{
	{core, "namespaces", &corev1.Namespace{}, &corev1.NamespaceList{}, false, true, false},
	{core, "configmaps", &corev1.ConfigMap{}, &corev1.ConfigMapList{}, true, false, false},
	{core, "secrets", &corev1.Secret{}, &corev1.SecretList{}, true, false, false},
	{core, "services", &corev1.Service{}, &corev1.ServiceList{}, true, true, false},
	{core, "serviceaccounts", &corev1.ServiceAccount{}, &corev1.ServiceAccountList{}, true, false, false},
	{core, "pods", &corev1.Pod{}, &corev1.PodList{}, true, true, false},
	{core, "persistentvolumeclaims", &corev1.PersistentVolumeClaim{}, &corev1.PersistentVolumeClaimList{}, true, true, false},
	{core, "events", &corev1.Event{}, &corev1.EventList{}, true, false, false},
	{apps, "deployments", &appsv1.Deployment{}, &appsv1.DeploymentList{}, true, true, true},
	{apps, "statefulsets", &appsv1.StatefulSet{}, &appsv1.StatefulSetList{}, true, true, true},
	{apps, "replicasets", &appsv1.ReplicaSet{}, &appsv1.ReplicaSetList{}, true, true, true},
	{apps, "daemonsets", &appsv1.DaemonSet{}, &appsv1.DaemonSetList{}, true, true, false},
	{batch, "jobs", &batchv1.Job{}, &batchv1.JobList{}, true, true, false},
	{batch, "cronjobs", &batchv1.CronJob{}, &batchv1.CronJobList{}, true, true, false},
	{netw, "ingresses", &networkingv1.Ingress{}, &networkingv1.IngressList{}, true, true, false},
	{netw, "networkpolicies", &networkingv1.NetworkPolicy{}, &networkingv1.NetworkPolicyList{}, true, false, false},
	{rbac, "roles", &rbacv1.Role{}, &rbacv1.RoleList{}, true, false, false},
	{rbac, "rolebindings", &rbacv1.RoleBinding{}, &rbacv1.RoleBindingList{}, true, false, false},
	{rbac, "clusterroles", &rbacv1.ClusterRole{}, &rbacv1.ClusterRoleList{}, false, false, false},
	{rbac, "clusterrolebindings", &rbacv1.ClusterRoleBinding{}, &rbacv1.ClusterRoleBindingList{}, false, false, false},
	{coord, "leases", &coordinationv1.Lease{}, &coordinationv1.LeaseList{}, true, false, false},
}

// Discovery extras, as in kube-apiserver: short names and the "all" category.
var shortNames = map[string][]string{
	"namespaces": {"ns"}, "configmaps": {"cm"}, "services": {"svc"}, "serviceaccounts": {"sa"},
	"pods": {"po"}, "persistentvolumeclaims": {"pvc"}, "events": {"ev"}, "deployments": {"deploy"},
	"statefulsets": {"sts"}, "replicasets": {"rs"}, "daemonsets": {"ds"}, "cronjobs": {"cj"},
	"ingresses": {"ing"}, "networkpolicies": {"netpol"},
}
var inCategoryAll = map[string]bool{"pods": true, "services": true, "deployments": true,
	"statefulsets": true, "replicasets": true, "daemonsets": true, "jobs": true, "cronjobs": true}

type discoveryStore struct {
	*genericregistry.Store
	short, categories []string
}

func (s discoveryStore) ShortNames() []string { return s.short }
func (s discoveryStore) Categories() []string { return s.categories }

var scaleGV = autoscalingv1.SchemeGroupVersion

// The external (v1) Go types double as the internal ("hub") types, with
// identity conversions, so no internal API packages are needed.
func addIdentityInternal(gv schema.GroupVersion, objs ...runtime.Object) {
	coreScheme.AddKnownTypes(schema.GroupVersion{Group: gv.Group, Version: runtime.APIVersionInternal}, objs...)
	for _, o := range objs {
		must(coreScheme.AddConversionFunc(o, o, func(a, b interface{}, _ conversion.Scope) error {
			reflect.ValueOf(b).Elem().Set(reflect.ValueOf(a).Elem())
			return nil
		}))
	}
}

func init() {
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme,
		autoscalingv1.AddToScheme, batchv1.AddToScheme, networkingv1.AddToScheme, rbacv1.AddToScheme, coordinationv1.AddToScheme} {
		must(add(coreScheme))
	}
	for _, k := range coreKinds {
		addIdentityInternal(k.gv, k.obj, k.list)
	}
	addIdentityInternal(scaleGV, &autoscalingv1.Scale{})
	registerDefaults(coreScheme)
	metav1.AddToGroupVersion(coreScheme, schema.GroupVersion{Version: "v1"})
	unversioned := schema.GroupVersion{Group: "", Version: "v1"}
	coreScheme.AddUnversionedTypes(unversioned, &metav1.Status{}, &metav1.APIVersions{}, &metav1.APIGroupList{}, &metav1.APIGroup{}, &metav1.APIResourceList{})
}

// storageVersions lists each served group/version once (for the etcd codec).
func storageVersions() []schema.GroupVersion {
	seen := map[schema.GroupVersion]bool{}
	var gvs []schema.GroupVersion
	for _, k := range coreKinds {
		if !seen[k.gv] {
			seen[k.gv] = true
			gvs = append(gvs, k.gv)
		}
	}
	return gvs
}

func must(err error) {
	if err != nil {
		panic(err)
	}
}

func fieldOf(obj runtime.Object, name string) (reflect.Value, bool) {
	v := reflect.ValueOf(obj).Elem().FieldByName(name)
	return v, v.IsValid()
}

// strategy: generation tracking, status reset, the registries' create-time work
// (defaults.go: prepareService, prepareJob); no validation.
type strategy struct {
	runtime.ObjectTyper
	names.NameGenerator
	namespaced bool
	status     bool
	gv         schema.GroupVersion
}

func (s strategy) NamespaceScoped() bool { return s.namespaced }
func (s strategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {
	if _, ok := fieldOf(obj, "Spec"); ok {
		m, _ := meta.Accessor(obj)
		m.SetGeneration(1)
	}
	if st, ok := fieldOf(obj, "Status"); ok && s.status {
		st.Set(reflect.Zero(st.Type()))
	}
	switch o := obj.(type) {
	case *corev1.Service:
		prepareService(o, nil)
	case *batchv1.Job:
		prepareJob(o)
	}
}
func (strategy) Validate(ctx context.Context, obj runtime.Object) field.ErrorList  { return nil }
func (strategy) WarningsOnCreate(ctx context.Context, obj runtime.Object) []string { return nil }
func (strategy) Canonicalize(obj runtime.Object)                                   {}
func (strategy) AllowCreateOnUpdate() bool                                         { return false }
func (strategy) AllowUnconditionalUpdate() bool                                    { return true }
func (strategy) ValidateUpdate(ctx context.Context, obj, old runtime.Object) field.ErrorList {
	return nil
}
func (strategy) WarningsOnUpdate(ctx context.Context, obj, old runtime.Object) []string { return nil }
func (s strategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	if svc, ok := obj.(*corev1.Service); ok {
		prepareService(svc, old.(*corev1.Service))
	}
	if st, ok := fieldOf(obj, "Status"); ok && s.status {
		oldSt, _ := fieldOf(old, "Status")
		st.Set(oldSt)
	}
	if spec, ok := fieldOf(obj, "Spec"); ok {
		oldSpec, _ := fieldOf(old, "Spec")
		m, _ := meta.Accessor(obj)
		om, _ := meta.Accessor(old)
		if !apiequality.Semantic.DeepEqual(spec.Interface(), oldSpec.Interface()) {
			m.SetGeneration(om.GetGeneration() + 1)
		} else {
			m.SetGeneration(om.GetGeneration())
		}
	}
}
func (s strategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	if !s.status {
		return nil
	}
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.gv.String()): fieldpath.NewSet(fieldpath.MakePathOrDie("status")),
	}
}

// statusStrategy: only .status may change through /status.
type statusStrategy struct{ strategy }

func (statusStrategy) PrepareForCreate(ctx context.Context, obj runtime.Object) {}
func (s statusStrategy) PrepareForUpdate(ctx context.Context, obj, old runtime.Object) {
	if newSpec, ok := fieldOf(obj, "Spec"); ok {
		oldSpec, _ := fieldOf(old, "Spec")
		newSpec.Set(oldSpec)
	}
	m, _ := meta.Accessor(obj)
	om, _ := meta.Accessor(old)
	m.SetLabels(om.GetLabels())
	m.SetAnnotations(om.GetAnnotations())
}
func (s statusStrategy) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return map[fieldpath.APIVersion]*fieldpath.Set{
		fieldpath.APIVersion(s.gv.String()): fieldpath.NewSet(fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata", "labels"), fieldpath.MakePathOrDie("metadata", "annotations")),
	}
}

type statusREST struct{ store *genericregistry.Store }

func (r *statusREST) New() runtime.Object { return r.store.New() }
func (r *statusREST) Destroy()            {}
func (r *statusREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	return r.store.Get(ctx, name, options)
}
func (r *statusREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	return r.store.Update(ctx, name, objInfo, createValidation, updateValidation, false, options)
}
func (r *statusREST) GetResetFields() map[fieldpath.APIVersion]*fieldpath.Set {
	return r.store.ResetFieldsStrategy.GetResetFields()
}

// scaleREST serves <resource>/scale as autoscaling/v1 Scale, mapping
// spec.replicas both ways and managedFields via managedfields.ScaleHandler
// (as kube-apiserver's apps registries do).
type scaleREST struct {
	store *genericregistry.Store
	gv    schema.GroupVersion
}

func (r *scaleREST) New() runtime.Object { return &autoscalingv1.Scale{} }
func (r *scaleREST) Destroy()            {}
func (r *scaleREST) GroupVersionKind(schema.GroupVersion) schema.GroupVersionKind {
	return scaleGV.WithKind("Scale")
}
func (r *scaleREST) Get(ctx context.Context, name string, options *metav1.GetOptions) (runtime.Object, error) {
	obj, err := r.store.Get(ctx, name, options)
	if err != nil {
		return nil, err
	}
	return toScale(obj)
}
func (r *scaleREST) Update(ctx context.Context, name string, objInfo rest.UpdatedObjectInfo, createValidation rest.ValidateObjectFunc, updateValidation rest.ValidateObjectUpdateFunc, forceAllowCreate bool, options *metav1.UpdateOptions) (runtime.Object, bool, error) {
	// Admission-style validation hooks see Scale objects, not the parent.
	uv := func(ctx context.Context, obj, old runtime.Object) error {
		s, err := toScale(obj)
		if err != nil || updateValidation == nil {
			return err
		}
		o, err := toScale(old)
		if err != nil {
			return err
		}
		return updateValidation(ctx, s, o)
	}
	obj, _, err := r.store.Update(ctx, name, &scaleObjInfo{name, objInfo, r}, nil, uv, false, options)
	if err != nil {
		return nil, false, err
	}
	s, err := toScale(obj)
	return s, false, err
}

func toScale(obj runtime.Object) (*autoscalingv1.Scale, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	spec, _ := fieldOf(obj, "Spec")
	status, _ := fieldOf(obj, "Status")
	s := &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: m.GetName(), Namespace: m.GetNamespace(),
		UID: m.GetUID(), ResourceVersion: m.GetResourceVersion(), CreationTimestamp: m.GetCreationTimestamp()}}
	s.Spec.Replicas = 1 // the default kube-apiserver would have filled in
	if r := spec.FieldByName("Replicas"); !r.IsNil() {
		s.Spec.Replicas = int32(r.Elem().Int())
	}
	s.Status.Replicas = int32(status.FieldByName("Replicas").Int())
	if sel, _ := spec.FieldByName("Selector").Interface().(*metav1.LabelSelector); sel != nil {
		ls, err := metav1.LabelSelectorAsSelector(sel)
		if err != nil {
			return nil, err
		}
		s.Status.Selector = ls.String()
	}
	return s, nil
}

type scaleObjInfo struct {
	name string
	req  rest.UpdatedObjectInfo
	r    *scaleREST
}

func (i *scaleObjInfo) Preconditions() *metav1.Preconditions { return i.req.Preconditions() }
func (i *scaleObjInfo) UpdatedObject(ctx context.Context, oldObj runtime.Object) (runtime.Object, error) {
	obj := oldObj.DeepCopyObject()
	m, _ := meta.Accessor(obj)
	if m.GetResourceVersion() == "" {
		return nil, apierrors.NewNotFound(i.r.store.DefaultQualifiedResource, i.name)
	}
	mf := managedfields.NewScaleHandler(m.GetManagedFields(), i.r.gv,
		managedfields.ResourcePathMappings{i.r.gv.String(): fieldpath.MakePathOrDie("spec", "replicas")})
	oldScale, err := toScale(obj)
	if err != nil {
		return nil, err
	}
	if oldScale.ManagedFields, err = mf.ToSubresource(); err != nil {
		return nil, err
	}
	newObj, err := i.req.UpdatedObject(ctx, oldScale)
	if err != nil {
		return nil, err
	}
	scale, ok := newObj.(*autoscalingv1.Scale)
	if !ok {
		return nil, apierrors.NewBadRequest(fmt.Sprintf("expected Scale, got %T", newObj))
	}
	if scale.Spec.Replicas < 0 {
		return nil, apierrors.NewInvalid(scaleGV.WithKind("Scale").GroupKind(), i.name, field.ErrorList{
			field.Invalid(field.NewPath("spec", "replicas"), scale.Spec.Replicas, "must be greater than or equal to 0")})
	}
	replicas := scale.Spec.Replicas
	spec, _ := fieldOf(obj, "Spec")
	spec.FieldByName("Replicas").Set(reflect.ValueOf(&replicas))
	m.SetResourceVersion(scale.ResourceVersion)
	parentMF, err := mf.ToParent(scale.ManagedFields)
	if err != nil {
		return nil, err
	}
	m.SetManagedFields(parentMF)
	return obj, nil
}

// newCoreServer builds the server for coreKinds; it is the delegate of the
// apiextensions server, which owns the port and the handler chain. It
// returns the non-core groups, for legacy /apis discovery.
func newCoreServer(cfg *genericapiserver.RecommendedConfig, optsGetter generic.RESTOptionsGetter) (*genericapiserver.GenericAPIServer, []metav1.APIGroup, error) {
	s, err := cfg.Complete().New("kube-apiserver-lite-core", genericapiserver.NewEmptyDelegate())
	if err != nil {
		return nil, nil, err
	}
	groups := map[string]*genericapiserver.APIGroupInfo{}
	var order []string
	for _, k := range coreKinds {
		gi, ok := groups[k.gv.Group]
		if !ok {
			g := genericapiserver.NewDefaultAPIGroupInfo(k.gv.Group, coreScheme, metav1.ParameterCodec, coreCodecs)
			gi = &g
			groups[k.gv.Group] = gi
			order = append(order, k.gv.Group)
		}
		st := strategy{coreScheme, names.SimpleNameGenerator, k.namespaced, k.status, k.gv}
		obj, list := k.obj, k.list
		gr := k.gv.WithResource(k.resource).GroupResource()
		store := &genericregistry.Store{
			NewFunc:                   func() runtime.Object { return obj.DeepCopyObject() },
			NewListFunc:               func() runtime.Object { return list.DeepCopyObject() },
			DefaultQualifiedResource:  gr,
			SingularQualifiedResource: k.gv.WithResource(singular(k.resource)).GroupResource(),
			CreateStrategy:            st,
			UpdateStrategy:            st,
			DeleteStrategy:            st,
			ResetFieldsStrategy:       st,
			TableConvertor:            rest.NewDefaultTableConvertor(gr),
		}
		if err := store.CompleteWithOptions(&generic.StoreOptions{RESTOptions: optsGetter}); err != nil {
			return nil, nil, err
		}
		if gi.VersionedResourcesStorageMap[k.gv.Version] == nil {
			gi.VersionedResourcesStorageMap[k.gv.Version] = map[string]rest.Storage{}
		}
		m := gi.VersionedResourcesStorageMap[k.gv.Version]
		ds := discoveryStore{Store: store, short: shortNames[k.resource]}
		if inCategoryAll[k.resource] {
			ds.categories = []string{"all"}
		}
		m[k.resource] = ds
		if k.status {
			ss := *store
			sst := statusStrategy{st}
			ss.UpdateStrategy = sst
			ss.ResetFieldsStrategy = sst
			m[k.resource+"/status"] = &statusREST{&ss}
		}
		if k.scale {
			m[k.resource+"/scale"] = &scaleREST{store, k.gv}
		}
	}
	if err := s.InstallLegacyAPIGroup("/api", groups[""]); err != nil {
		return nil, nil, err
	}
	var infos []*genericapiserver.APIGroupInfo
	var discovery []metav1.APIGroup
	for _, g := range order {
		if g == "" {
			continue
		}
		infos = append(infos, groups[g])
		gv := groups[g].PrioritizedVersions[0]
		v := metav1.GroupVersionForDiscovery{GroupVersion: gv.String(), Version: gv.Version}
		discovery = append(discovery, metav1.APIGroup{Name: g, Versions: []metav1.GroupVersionForDiscovery{v}, PreferredVersion: v})
	}
	if err := s.InstallAPIGroups(infos...); err != nil {
		return nil, nil, err
	}
	return s, discovery, nil
}

func singular(plural string) string {
	switch plural {
	case "ingresses":
		return "ingress"
	case "networkpolicies":
		return "networkpolicy"
	}
	return plural[:len(plural)-1]
}
