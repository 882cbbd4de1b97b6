// Package localpath is k1s's local-path storage provisioner: PVCs of a
// StorageClass whose provisioner is k1s.io/local-path (the default class
// "local-path", WaitForFirstConsumer) get a hostPath PersistentVolume in a
// directory under the storage root, on the node the scheduler picked for
// the claim's first Pod, bound there by node affinity. The server cannot
// touch an agent's disk, so the directory is made and removed by a
// short-lived helper Pod on that node (image k1s-io/local-path-helper,
// cmd/k1s-local-path, package volumedir). This file is the pure part:
// which claims are ours, the PV for a claim, the helper Pod; controller.go
// runs it against the API.
package localpath

import (
	"fmt"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/k1s-io/k1s/internal/localpath/volumedir"
)

const (
	// Provisioner is the StorageClass provisioner name k1s serves.
	Provisioner = "k1s.io/local-path"
	// User is the identity the provisioner acts as (by impersonation);
	// manifests/local-storage.yaml grants it what it needs and no more.
	User = "system:k1s:local-path"

	annSelectedNode  = "volume.kubernetes.io/selected-node"
	annProvisionedBy = "pv.kubernetes.io/provisioned-by"
	// annNode records the volume's node on the PV, for the delete.
	annNode     = "local-path.k1s.io/node"
	labelHelper = "app.kubernetes.io/name"
	helperName  = "k1s-local-path"
)

// Config is what the provisioner is started with.
type Config struct {
	// Root is the directory on every node under which volumes live.
	Root string
	// HelperImage runs cmd/k1s-local-path.
	HelperImage string
	// Namespace holds the helper Pods.
	Namespace string
}

// Refusal is a claim the provisioner will not serve as it stands; its
// message goes into the claim's ProvisioningFailed event.
type Refusal struct{ Msg string }

func (r *Refusal) Error() string { return r.Msg }

// Ours reports whether class is served by this provisioner.
func Ours(class *storagev1.StorageClass) bool {
	return class != nil && class.Provisioner == Provisioner
}

// Wanted reports whether claim waits for a volume from us and on which
// node: pending, unbound, of one of our classes, with a node chosen by the
// scheduler.
func Wanted(claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass) (node string, ok bool) {
	if !Ours(class) || claim.Spec.VolumeName != "" || claim.DeletionTimestamp != nil ||
		claim.Status.Phase != corev1.ClaimPending {
		return "", false
	}
	node = claim.Annotations[annSelectedNode]
	return node, node != ""
}

// VolumeName is the PV name for claim (as upstream provisioners name it,
// so a retry finds the PV it already made).
func VolumeName(claim *corev1.PersistentVolumeClaim) string {
	return "pvc-" + string(claim.UID)
}

// Plan checks claim and returns its PV on node, whose kubernetes.io/hostname
// label is hostname. A claim local-path cannot serve gets a *Refusal.
func Plan(cfg Config, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node, hostname string) (*corev1.PersistentVolume, error) {
	for _, m := range claim.Spec.AccessModes {
		if m != corev1.ReadWriteOnce && m != corev1.ReadWriteOncePod {
			return nil, &Refusal{fmt.Sprintf("access mode %s is not supported: a local-path volume is a directory on one node's disk, so only ReadWriteOnce and ReadWriteOncePod work", m)}
		}
	}
	if claim.Spec.VolumeMode != nil && *claim.Spec.VolumeMode == corev1.PersistentVolumeBlock {
		return nil, &Refusal{"volumeMode Block is not supported: a local-path volume is a directory; use volumeMode Filesystem"}
	}
	if claim.Spec.Selector != nil {
		return nil, &Refusal{"a selector is not supported: local-path makes a new volume for each claim; remove spec.selector"}
	}
	if claim.Spec.DataSource != nil || claim.Spec.DataSourceRef != nil {
		return nil, &Refusal{"a data source is not supported: local-path volumes start empty; remove spec.dataSource"}
	}
	size, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		return nil, &Refusal{"the claim asks for no size: set spec.resources.requests.storage"}
	}
	name := VolumeName(claim)
	dir, err := volumedir.Path(cfg.Root, name)
	if err != nil {
		return nil, err
	}
	if hostname == "" {
		hostname = node
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	fsMode := corev1.PersistentVolumeFilesystem
	dirType := corev1.HostPathDirectory
	modes := claim.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	return &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{annProvisionedBy: Provisioner, annNode: node},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: size},
			AccessModes: modes,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
				ResourceVersion: claim.ResourceVersion,
			},
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			MountOptions:                  class.MountOptions,
			VolumeMode:                    &fsMode,
			// Directory, not DirectoryOrCreate: if the directory is gone the
			// Pod fails instead of silently starting on an empty one.
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &dirType},
			},
			NodeAffinity: &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{hostname},
				}}}},
			}},
		},
	}, nil
}

// ToDelete reports whether pv is one of ours whose claim is gone and whose
// policy is Delete, and on which node its directory is.
func ToDelete(pv *corev1.PersistentVolume) (node string, ok bool) {
	if pv.Annotations[annProvisionedBy] != Provisioner || pv.DeletionTimestamp != nil ||
		pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		pv.Status.Phase != corev1.VolumeReleased {
		return "", false
	}
	return pv.Annotations[annNode], true
}

// Op is what a helper Pod does.
type Op string

const (
	OpCreate Op = "create"
	OpDelete Op = "delete"
)

// HelperPod runs `k1s-local-path op` for volume name on node, with only the
// storage root mounted (at its own path, so messages name the node's path).
func HelperPod(cfg Config, op Op, node, name string, size int64) *corev1.Pod {
	args := []string{string(op), cfg.Root, name}
	if op == OpCreate {
		args = append(args, strconv.FormatInt(size, 10))
	}
	rootType := corev1.HostPathDirectoryOrCreate
	zero := int64(0)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:      helperName + "-" + string(op) + "-" + name,
			Namespace: cfg.Namespace,
			Labels:    map[string]string{labelHelper: helperName},
		},
		Spec: corev1.PodSpec{
			// nodeName skips the scheduler: the Pod runs even on a node
			// that is full or cordoned, and tolerates every taint.
			NodeName:                      node,
			RestartPolicy:                 corev1.RestartPolicyNever,
			AutomountServiceAccountToken:  new(false),
			EnableServiceLinks:            new(false),
			TerminationGracePeriodSeconds: &zero,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:                     "helper",
				Image:                    cfg.HelperImage,
				ImagePullPolicy:          corev1.PullIfNotPresent,
				Args:                     args,
				TerminationMessagePolicy: corev1.TerminationMessageFallbackToLogsOnError,
				VolumeMounts:             []corev1.VolumeMount{{Name: "root", MountPath: cfg.Root}},
				Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
					corev1.ResourceMemory: resource.MustParse("32Mi"),
				}},
			}},
			Volumes: []corev1.Volume{{Name: "root", VolumeSource: corev1.VolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: cfg.Root, Type: &rootType},
			}}},
		},
	}
}
