// Command netcheck is the tests' network probe inside Pods. It uses Go's
// own resolver (which honours resolv.conf's search path and ndots), since
// the static busybox cannot resolve names through glibc's NSS.
//
//	netcheck get URL       print the body of an HTTP GET
//	netcheck lookup NAME   print NAME's addresses, one per line, sorted
//	netcheck cname NAME    print NAME's canonical name
//	netcheck sink ADDR     accept TCP connections on ADDR and discard what they send
//	netcheck send ADDR     send to ADDR for 5 s and print the rate in Mbit/s
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"time"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: netcheck get URL | lookup NAME | cname NAME | sink ADDR | send ADDR")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "sink":
		if err := sink(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "netcheck:", err)
			os.Exit(1)
		}
		return
	case "send":
		if err := send(os.Args[2], 5*time.Second); err != nil {
			fmt.Fprintln(os.Stderr, "netcheck:", err)
			os.Exit(1)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := run(ctx, os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "netcheck:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cmd, arg string) error {
	switch cmd {
	case "get":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, arg, nil)
		if err != nil {
			return err
		}
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s: %s", arg, resp.Status, body)
		}
		_, err = os.Stdout.Write(body)
		return err
	case "lookup":
		addrs, err := net.DefaultResolver.LookupHost(ctx, arg)
		if err != nil {
			return err
		}
		sort.Strings(addrs)
		for _, a := range addrs {
			fmt.Println(a)
		}
		return nil
	case "cname":
		c, err := net.DefaultResolver.LookupCNAME(ctx, arg)
		if err != nil {
			return err
		}
		fmt.Println(c)
		return nil
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func sink(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	for {
		c, err := l.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

func send(addr string, d time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	buf := make([]byte, 128<<10)
	var n int64
	start := time.Now()
	for time.Since(start) < d {
		w, err := c.Write(buf)
		n += int64(w)
		if err != nil {
			return err
		}
	}
	fmt.Printf("%.0f\n", float64(n)*8/1e6/time.Since(start).Seconds())
	return nil
}
