// Command k1s-ingress is k1s's Ingress controller (package
// internal/ingress), run in-cluster by the k1s-ingress Deployment in
// kube-system. It serves the Ingresses of controller k1s.io/ingress on
// --http-port and --https-port, health on --health-port, and exits on
// SIGTERM or SIGINT after shutting its servers down gracefully.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	networkingv1client "k8s.io/client-go/kubernetes/typed/networking/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/k1s-io/k1s/internal/ingress"
)

func main() {
	httpPort := flag.Int("http-port", 8000, "port of the HTTP proxy")
	httpsPort := flag.Int("https-port", 8443, "port of the HTTPS proxy")
	healthPort := flag.Int("health-port", 9000, "port of /healthz and /readyz")
	publish := flag.String("publish-service", "kube-system/k1s-ingress",
		"namespace/name of the Service whose load balancer status is copied to the Ingresses (empty: none)")
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig file (empty: in-cluster configuration)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()

	logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	level, err := logrus.ParseLevel(*logLevel)
	if err != nil {
		fail(err)
	}
	logrus.SetLevel(level)

	var cfg *rest.Config
	if *kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", *kubeconfig)
	}
	if err != nil {
		fail(fmt.Errorf("kubernetes client config: %w", err))
	}
	cfg.UserAgent = "k1s-ingress"
	client, err := newClient(cfg)
	if err != nil {
		fail(err)
	}

	c, err := ingress.New(client, ingress.Options{
		HTTPAddr:        fmt.Sprintf(":%d", *httpPort),
		HTTPSAddr:       fmt.Sprintf(":%d", *httpsPort),
		HealthAddr:      fmt.Sprintf(":%d", *healthPort),
		PublishService:  *publish,
		ShutdownTimeout: 10 * time.Second,
		Log:             logrus.StandardLogger(),
	})
	if err != nil {
		fail(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := c.Run(ctx); err != nil {
		fail(err)
	}
	logrus.Info("k1s-ingress stopped")
}

func fail(err error) {
	logrus.Error(err)
	os.Exit(1)
}

// client is the two API groups the controller uses, over one HTTP client.
// Not kubernetes.NewForConfig: the full clientset would link every API
// group's client into this binary.
type client struct {
	core *corev1client.CoreV1Client
	net  *networkingv1client.NetworkingV1Client
}

func (c client) CoreV1() corev1client.CoreV1Interface                   { return c.core }
func (c client) NetworkingV1() networkingv1client.NetworkingV1Interface { return c.net }

func newClient(cfg *rest.Config) (ingress.Client, error) {
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	core, err := corev1client.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	net, err := networkingv1client.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	return client{core: core, net: net}, nil
}
