package localpath

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// kubelet plays the node for one helper Pod: once it exists, its status
// becomes st.
func kubelet(t *testing.T, kube *fake.Clientset, name string, st corev1.PodStatus) {
	go func() {
		for range 200 {
			p, err := kube.CoreV1().Pods(cfg.Namespace).Get(context.Background(), name, metav1.GetOptions{})
			if err == nil {
				p.Status = st
				if _, err := kube.CoreV1().Pods(cfg.Namespace).UpdateStatus(context.Background(), p, metav1.UpdateOptions{}); err != nil {
					t.Errorf("update status: %v", err)
				}
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
}

func TestRunHelperReportsTheHelpersMessageAndRemovesThePod(t *testing.T) {
	kube := fake.NewClientset()
	c := &controller{cfg: cfg, kube: kube, log: logrus.New()}
	pod := HelperPod(cfg, OpCreate, "a2", "pvc-1", 1<<50)
	kubelet(t, kube, pod.Name, corev1.PodStatus{
		Phase: corev1.PodFailed,
		ContainerStatuses: []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{
			Terminated: &corev1.ContainerStateTerminated{ExitCode: 1, Message: "asks for 1.0 PiB but /var/lib/k1s/storage has only 3.0 GiB free\n"},
		}}},
	})
	err := c.runHelper(context.Background(), pod)
	if err == nil || err.Error() != "asks for 1.0 PiB but /var/lib/k1s/storage has only 3.0 GiB free" {
		t.Fatalf("err = %v, want the helper's termination message", err)
	}
	if _, err := kube.CoreV1().Pods(cfg.Namespace).Get(context.Background(), pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("helper Pod left behind: %v", err)
	}
}

func TestRunHelperSucceeds(t *testing.T) {
	kube := fake.NewClientset()
	c := &controller{cfg: cfg, kube: kube, log: logrus.New()}
	pod := HelperPod(cfg, OpDelete, "a2", "pvc-1", 0)
	kubelet(t, kube, pod.Name, corev1.PodStatus{Phase: corev1.PodSucceeded})
	if err := c.runHelper(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
}

func TestRunHelperSaysWhyAHelperDidNotRun(t *testing.T) {
	defer func(d time.Duration) { helperTimeout = d }(helperTimeout)
	helperTimeout = 2 * time.Second
	kube := fake.NewClientset()
	c := &controller{cfg: cfg, kube: kube, log: logrus.New()}
	pod := HelperPod(cfg, OpCreate, "a2", "pvc-1", 1)
	kubelet(t, kube, pod.Name, corev1.PodStatus{
		Phase: corev1.PodPending,
		ContainerStatuses: []corev1.ContainerStatus{{Name: "helper", State: corev1.ContainerState{
			Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull", Message: "not found"},
		}}},
	})
	err := c.runHelper(context.Background(), pod)
	if err == nil || !strings.Contains(err.Error(), "ErrImagePull") || !strings.Contains(err.Error(), "air-gap bundle") {
		t.Fatalf("err = %v, want the waiting reason and a hint", err)
	}
}
