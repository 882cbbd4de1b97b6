package dashboard

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// NodeView is one row of the overview's node table.
type NodeView struct {
	Name, Status, Roles, Version, Age string
	Ready                             bool
	CPU, Memory                       string // capacity
	CPUUsage, MemoryUsage             string // from metrics.k8s.io, "" without it
}

// usage is one node's metrics.k8s.io sample.
type usage struct{ CPU, Memory resource.Quantity }

func nodeView(n *corev1.Node, u *usage, now time.Time) NodeView {
	v := NodeView{Name: n.Name, Version: n.Status.NodeInfo.KubeletVersion, Age: age(n.CreationTimestamp.Time, now), Status: "NotReady"}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			v.Ready, v.Status = true, "Ready"
		}
	}
	if n.Spec.Unschedulable {
		v.Status += ",SchedulingDisabled"
	}
	var roles []string
	for k := range n.Labels {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	sort.Strings(roles)
	v.Roles = strings.Join(roles, ",")
	if v.Roles == "" {
		v.Roles = "<none>"
	}
	cpu, mem := n.Status.Capacity[corev1.ResourceCPU], n.Status.Capacity[corev1.ResourceMemory]
	v.CPU, v.Memory = cpu.String(), mebi(mem)
	if u != nil {
		v.CPUUsage = fmt.Sprintf("%dm", u.CPU.MilliValue())
		if c := cpu.MilliValue(); c > 0 {
			v.CPUUsage += fmt.Sprintf(" (%d%%)", u.CPU.MilliValue()*100/c)
		}
		v.MemoryUsage = mebi(u.Memory)
		if m := mem.Value(); m > 0 {
			v.MemoryUsage += fmt.Sprintf(" (%d%%)", u.Memory.Value()*100/m)
		}
	}
	return v
}

func mebi(q resource.Quantity) string { return fmt.Sprintf("%dMi", q.Value()>>20) }

// PhaseCount is how many Pods are in one phase.
type PhaseCount struct {
	Phase string
	Count int
}

var phaseOrder = []corev1.PodPhase{corev1.PodRunning, corev1.PodPending, corev1.PodSucceeded, corev1.PodFailed, corev1.PodUnknown}

func podPhases(pods []corev1.Pod) []PhaseCount {
	n := map[corev1.PodPhase]int{}
	for i := range pods {
		n[pods[i].Status.Phase]++
	}
	out := make([]PhaseCount, 0, len(phaseOrder))
	for _, p := range phaseOrder {
		out = append(out, PhaseCount{string(p), n[p]})
	}
	return out
}

// EventView is one event line.
type EventView struct {
	Age, Namespace, Object, Type, Reason, Message string
	Count                                         int32
}

func eventView(e *corev1.Event, now time.Time) EventView {
	t := e.LastTimestamp.Time
	if t.IsZero() {
		t = e.EventTime.Time
	}
	if t.IsZero() {
		t = e.CreationTimestamp.Time
	}
	c := e.Count
	if c == 0 {
		c = 1
	}
	return EventView{Age: age(t, now), Namespace: e.Namespace, Object: e.InvolvedObject.Kind + "/" + e.InvolvedObject.Name,
		Type: e.Type, Reason: e.Reason, Message: e.Message, Count: c}
}

// eventViews turns events into lines, newest first, at most max.
func eventViews(evs []corev1.Event, max int, now time.Time) []EventView {
	last := func(e *corev1.Event) time.Time {
		if !e.LastTimestamp.IsZero() {
			return e.LastTimestamp.Time
		}
		if !e.EventTime.IsZero() {
			return e.EventTime.Time
		}
		return e.CreationTimestamp.Time
	}
	sort.SliceStable(evs, func(i, j int) bool { return last(&evs[i]).After(last(&evs[j])) })
	if len(evs) > max {
		evs = evs[:max]
	}
	out := make([]EventView, 0, len(evs))
	for i := range evs {
		out = append(out, eventView(&evs[i], now))
	}
	return out
}

// WorkloadView is one controller row; Scalable/Restartable pick its actions.
type WorkloadView struct {
	Kind, Name, Ready, Info, Age string
	Desired                      int32
	Scalable, Restartable        bool
}

func deploymentView(d *appsv1.Deployment, now time.Time) WorkloadView {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	return WorkloadView{Kind: "Deployment", Name: d.Name, Ready: fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, want), Desired: want,
		Info: fmt.Sprintf("%d up to date, %d available", d.Status.UpdatedReplicas, d.Status.AvailableReplicas),
		Age:  age(d.CreationTimestamp.Time, now), Scalable: true, Restartable: true}
}

func statefulSetView(s *appsv1.StatefulSet, now time.Time) WorkloadView {
	want := int32(1)
	if s.Spec.Replicas != nil {
		want = *s.Spec.Replicas
	}
	return WorkloadView{Kind: "StatefulSet", Name: s.Name, Ready: fmt.Sprintf("%d/%d", s.Status.ReadyReplicas, want), Desired: want,
		Info: fmt.Sprintf("%d up to date", s.Status.UpdatedReplicas), Age: age(s.CreationTimestamp.Time, now), Scalable: true, Restartable: true}
}

func daemonSetView(d *appsv1.DaemonSet, now time.Time) WorkloadView {
	return WorkloadView{Kind: "DaemonSet", Name: d.Name, Ready: fmt.Sprintf("%d/%d", d.Status.NumberReady, d.Status.DesiredNumberScheduled),
		Desired: d.Status.DesiredNumberScheduled, Info: fmt.Sprintf("%d up to date", d.Status.UpdatedNumberScheduled),
		Age: age(d.CreationTimestamp.Time, now), Restartable: true}
}

func jobView(j *batchv1.Job, now time.Time) WorkloadView {
	want := int32(1)
	if j.Spec.Completions != nil {
		want = *j.Spec.Completions
	}
	info := fmt.Sprintf("%d active, %d failed", j.Status.Active, j.Status.Failed)
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			info = string(c.Type) + ": " + info
		}
	}
	return WorkloadView{Kind: "Job", Name: j.Name, Ready: fmt.Sprintf("%d/%d", j.Status.Succeeded, want), Desired: want, Info: info,
		Age: age(j.CreationTimestamp.Time, now)}
}

func cronJobView(c *batchv1.CronJob, now time.Time) WorkloadView {
	last := "never"
	if c.Status.LastScheduleTime != nil {
		last = age(c.Status.LastScheduleTime.Time, now) + " ago"
	}
	info := fmt.Sprintf("schedule %q, last run %s", c.Spec.Schedule, last)
	if c.Spec.Suspend != nil && *c.Spec.Suspend {
		info += ", suspended"
	}
	return WorkloadView{Kind: "CronJob", Name: c.Name, Ready: fmt.Sprintf("%d active", len(c.Status.Active)), Info: info,
		Age: age(c.CreationTimestamp.Time, now)}
}

// PodView is one Pod row.
type PodView struct {
	Namespace, Name, Status, Ready, Node, IP, Age string
	Restarts                                      int32
	OK                                            bool
}

func podView(p *corev1.Pod, now time.Time) PodView {
	v := PodView{Namespace: p.Namespace, Name: p.Name, Node: p.Spec.NodeName, IP: p.Status.PodIP, Age: age(p.CreationTimestamp.Time, now)}
	ready := 0
	for _, c := range p.Status.ContainerStatuses {
		if c.Ready {
			ready++
		}
		v.Restarts += c.RestartCount
	}
	v.Ready = fmt.Sprintf("%d/%d", ready, len(p.Spec.Containers))
	v.Status = podStatus(p)
	v.OK = v.Status == string(corev1.PodRunning) || v.Status == string(corev1.PodSucceeded)
	if v.Node == "" {
		v.Node = "<none>"
	}
	return v
}

// podStatus is the reason kubectl would show: a waiting or terminated
// container's reason beats the phase, deletion beats both.
func podStatus(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	s := string(p.Status.Phase)
	if p.Status.Reason != "" {
		s = p.Status.Reason
	}
	for _, c := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if w := c.State.Waiting; w != nil && w.Reason != "" && w.Reason != "PodInitializing" {
			return w.Reason
		}
		if t := c.State.Terminated; t != nil && t.Reason != "" && t.ExitCode != 0 {
			return t.Reason
		}
	}
	return s
}

// ContainerView is one container of the Pod page.
type ContainerView struct {
	Name, Image, State string
	Ready              bool
	Restarts           int32
}

func containerViews(p *corev1.Pod) []ContainerView {
	st := map[string]corev1.ContainerStatus{}
	for _, c := range p.Status.ContainerStatuses {
		st[c.Name] = c
	}
	out := make([]ContainerView, 0, len(p.Spec.Containers))
	for _, c := range p.Spec.Containers {
		v := ContainerView{Name: c.Name, Image: c.Image, State: "Waiting"}
		if s, ok := st[c.Name]; ok {
			v.Ready, v.Restarts = s.Ready, s.RestartCount
			switch {
			case s.State.Running != nil:
				v.State = "Running since " + s.State.Running.StartedAt.UTC().Format(time.RFC3339)
			case s.State.Waiting != nil:
				v.State = "Waiting: " + s.State.Waiting.Reason
			case s.State.Terminated != nil:
				v.State = fmt.Sprintf("Terminated: %s (exit code %d)", s.State.Terminated.Reason, s.State.Terminated.ExitCode)
			}
		}
		out = append(out, v)
	}
	return out
}

// ServiceView is one Service row.
type ServiceView struct{ Name, Type, ClusterIP, Ports, LoadBalancer, Age string }

func serviceView(s *corev1.Service, now time.Time) ServiceView {
	var ports []string
	for _, p := range s.Spec.Ports {
		x := strconv.Itoa(int(p.Port))
		if p.NodePort != 0 {
			x += ":" + strconv.Itoa(int(p.NodePort))
		}
		ports = append(ports, x+"/"+string(p.Protocol))
	}
	var lb []string
	for _, in := range s.Status.LoadBalancer.Ingress {
		if in.IP != "" {
			lb = append(lb, in.IP)
		} else if in.Hostname != "" {
			lb = append(lb, in.Hostname)
		}
	}
	l := strings.Join(lb, ", ")
	if l == "" && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		l = "<pending>"
	}
	return ServiceView{Name: s.Name, Type: string(s.Spec.Type), ClusterIP: s.Spec.ClusterIP, Ports: strings.Join(ports, ", "), LoadBalancer: l,
		Age: age(s.CreationTimestamp.Time, now)}
}

// IngressView is one Ingress row.
type IngressView struct{ Name, Class, Hosts, Addresses, Age string }

func ingressView(in *networkingv1.Ingress, now time.Time) IngressView {
	var hosts, addrs []string
	for _, r := range in.Spec.Rules {
		h := r.Host
		if h == "" {
			h = "*"
		}
		hosts = append(hosts, h)
	}
	for _, a := range in.Status.LoadBalancer.Ingress {
		if a.IP != "" {
			addrs = append(addrs, a.IP)
		} else if a.Hostname != "" {
			addrs = append(addrs, a.Hostname)
		}
	}
	class := "<default>"
	if in.Spec.IngressClassName != nil {
		class = *in.Spec.IngressClassName
	}
	return IngressView{Name: in.Name, Class: class, Hosts: strings.Join(hosts, ", "), Addresses: strings.Join(addrs, ", "), Age: age(in.CreationTimestamp.Time, now)}
}

// age is a short duration like kubectl's: 42s, 5m, 3h, 2d.
func age(t, now time.Time) string {
	if t.IsZero() {
		return "?"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
