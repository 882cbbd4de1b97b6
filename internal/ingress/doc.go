// Package ingress is k1s's own Ingress controller, which k1s runs by
// default as the k1s-ingress Deployment in kube-system (see
// manifests/ingress.yaml).
//
// The package owns the whole data path of networking.k8s.io/v1 Ingresses
// whose IngressClass names the controller k1s.io/ingress:
//
//   - the routing table (table.go): which Ingresses are ours, host and path
//     matching per the Kubernetes Ingress semantics, backend resolution to a
//     Service's ClusterIP:port (or ExternalName:port), and the choice of TLS
//     certificate by SNI. Build and Table.Route are pure functions of the API
//     objects, so they are tested without a cluster;
//   - the controller (controller.go): shared informers on Ingresses,
//     IngressClasses, Services and kubernetes.io/tls Secrets, debounced
//     rebuilds of the table swapped in atomically, and the Ingresses'
//     status.loadBalancer copied from the published Service;
//   - the servers (proxy.go): the HTTP and HTTPS reverse proxies and the
//     /healthz and /readyz endpoints on their own port.
//
// Load balancing between a Service's endpoints is left to kube-proxy: the
// controller proxies to the ClusterIP.
package ingress
