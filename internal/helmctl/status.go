package helmctl

import (
	"context"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// status is what the controller reads back from a HelmChart's status.
type status struct {
	Want             string
	ReleaseNamespace string
	Revision         int64
	Ready            bool
}

func readStatus(u *unstructured.Unstructured) status {
	var st status
	st.Want, _, _ = unstructured.NestedString(u.Object, "status", "want")
	st.ReleaseNamespace, _, _ = unstructured.NestedString(u.Object, "status", "releaseNamespace")
	st.Revision, _, _ = unstructured.NestedInt64(u.Object, "status", "releaseRevision")
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
			st.Ready = true
		}
	}
	return st
}

// Conditions of a HelmChart: Ready (the release is deployed as asked) and
// Failed (the last attempt failed; its message is Helm's error).
func conditions(ready bool, reason, msg string) []any {
	now := time.Now().UTC().Format(time.RFC3339)
	b := func(v bool) string {
		if v {
			return string(metav1.ConditionTrue)
		}
		return string(metav1.ConditionFalse)
	}
	failedMsg := ""
	if !ready {
		failedMsg = msg
	}
	return []any{
		map[string]any{"type": "Ready", "status": b(ready), "reason": reason, "message": msg, "lastTransitionTime": now},
		map[string]any{"type": "Failed", "status": b(!ready), "reason": reason, "message": failedMsg, "lastTransitionTime": now},
	}
}

func (c *controller) writeStatus(ctx context.Context, u *unstructured.Unstructured, generation int64, want, namespace string, revision int64, ready bool, reason, msg string) error {
	u = u.DeepCopy()
	st := map[string]any{
		"observedGeneration": generation,
		"want":               want,
		"releaseNamespace":   namespace,
		"releaseRevision":    revision,
		"conditions":         conditions(ready, reason, msg),
	}
	if want == "" {
		delete(st, "want")
	}
	if namespace == "" {
		delete(st, "releaseNamespace")
	}
	u.Object["status"] = st
	_, err := c.dyn.Resource(ChartResource).Namespace(u.GetNamespace()).UpdateStatus(ctx, u, metav1.UpdateOptions{})
	return err
}

// setFailed records a failure; what was last deployed stays in the status
// (want, release namespace and revision), as Helm keeps it running.
func (c *controller) setFailed(ctx context.Context, u *unstructured.Unstructured, hc *Chart, cause error, namespace string) error {
	old := readStatus(u)
	if namespace == "" {
		namespace = old.ReleaseNamespace
	}
	var gen int64
	if hc != nil {
		gen = hc.Generation
	}
	return c.writeStatus(ctx, u, gen, old.Want, namespace, old.Revision, false, ReasonFailed, cause.Error())
}
