package agent

import (
	"context"
	"slices"
	"testing"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func slice(name, svc string, port int32, ready *bool, addrs ...string) *discoveryv1.EndpointSlice {
	https := "https"
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &https, Port: &port}},
	}
	for _, a := range addrs {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: discoveryv1.EndpointConditions{Ready: ready}})
	}
	return s
}

// The servers are the kubernetes Service's ready endpoints, nothing else.
func TestAPIServersFromEndpointSlices(t *testing.T) {
	no := false
	kube := fake.NewSimpleClientset(
		slice("kubernetes", "kubernetes", 6443, nil, "10.0.0.2", "10.0.0.1"),
		slice("kubernetes-x", "kubernetes", 6443, &no, "10.0.0.9"),
		slice("web", "web", 80, nil, "10.42.0.5"),
	)
	got, err := apiServers(context.Background(), kube)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"10.0.0.1:6443", "10.0.0.2:6443"}; !slices.Equal(got, want) {
		t.Errorf("apiServers = %v, want %v", got, want)
	}
	if _, err := apiServers(context.Background(), fake.NewSimpleClientset()); err == nil {
		t.Error("no endpoints: want an error, not an empty list that would empty the balancer")
	}
}
