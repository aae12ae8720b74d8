package cluster

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/fleetingest/fleetingest/api/v1alpha1"
)

func metaNow() metav1.Time { return metav1.Now() }

// collectGarbage deletes, as the garbage collector does after a background deletion, the
// objects of a namespace whose owners are all gone. The owners it knows are the namespace's
// FleetIngestions and the objects it lists (Deployments, Services, ConfigMaps, Ingresses,
// PodDisruptionBudgets, NetworkPolicies).
func (n *Node) collectGarbage(ctx context.Context, ns string) error {
	lists := []client.ObjectList{
		&v1alpha1.FleetIngestionList{}, &appsv1.DeploymentList{}, &corev1.ServiceList{}, &corev1.ConfigMapList{},
		&networkingv1.IngressList{}, &policyv1.PodDisruptionBudgetList{}, &networkingv1.NetworkPolicyList{},
	}
	exists := map[types.UID]bool{}
	var objects []client.Object
	for _, l := range lists {
		if err := n.cfg.Client.List(ctx, l, client.InNamespace(ns)); err != nil {
			return fmt.Errorf("listing %T of %s: %w", l, ns, err)
		}
		items, err := meta.ExtractList(l)
		if err != nil {
			return err
		}
		for _, it := range items {
			o, ok := it.(client.Object)
			if !ok {
				continue
			}
			exists[o.GetUID()] = true
			objects = append(objects, o)
		}
	}
	var errs []error
	for _, o := range objects {
		refs := o.GetOwnerReferences()
		if len(refs) == 0 || o.GetDeletionTimestamp() != nil {
			continue
		}
		orphan := true
		for _, r := range refs {
			if exists[r.UID] {
				orphan = false
			}
		}
		if !orphan {
			continue
		}
		n.cfg.Log.Info("collecting garbage", "object", fmt.Sprintf("%T %s/%s", o, ns, o.GetName()))
		err := n.cfg.Client.Delete(ctx, o, client.PropagationPolicy(metav1.DeletePropagationBackground))
		if client.IgnoreNotFound(err) != nil {
			errs = append(errs, fmt.Errorf("deleting %T %s/%s: %w", o, ns, o.GetName(), err))
		}
	}
	return errors.Join(errs...)
}
