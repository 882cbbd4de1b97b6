package join

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"
)

// fakeMembers records AddLearner calls (unit-test stand-in for etcd).
type fakeMembers struct{ added []string }

func (f *fakeMembers) AddLearner(_ context.Context, name, peerURL string) (string, error) {
	f.added = append(f.added, peerURL)
	return "a=https://192.0.2.1:2380," + name + "=" + peerURL, nil
}
func (f *fakeMembers) Bundle(context.Context) ([]byte, error) { return []byte("sealed"), nil }

func postServerJoin(t *testing.T, s *Server, secret string, req ServerJoinRequest) *httptest.ResponseRecorder {
	t.Helper()
	body, _ := json.Marshal(req)
	r := httptest.NewRequest(http.MethodPost, ServerJoinPath, strings.NewReader(string(body)))
	r.RemoteAddr = "192.0.2.9:40000"
	if secret != "" {
		r.Header.Set("Authorization", "Bearer "+secret)
	}
	w := httptest.NewRecorder()
	s.Front(http.NotFoundHandler()).ServeHTTP(w, r)
	return w
}

// TestServerJoinTokenOnly: only the server token adds a member (a
// bootstrap token, which lets agents join, does not), bad peer URLs are
// refused, and wrong tokens are throttled like agent joins.
func TestServerJoinTokenOnly(t *testing.T) {
	log, _ := logtest.NewNullLogger()
	fm := &fakeMembers{}
	secret := "0123456789abcdef0123456789abcdef"
	s := &Server{Secret: secret, Etcd: fm, Log: logrus.NewEntry(log)}
	good := ServerJoinRequest{Name: "b-192.0.2.2", PeerURL: "https://192.0.2.2:2380"}
	if w := postServerJoin(t, s, secret, good); w.Code != http.StatusServiceUnavailable {
		t.Errorf("before Open: %d, want 503", w.Code)
	}
	s.Open()
	if w := postServerJoin(t, s, "abcdef.0123456789abcdef", good); w.Code != http.StatusUnauthorized {
		t.Errorf("bootstrap token: %d %s, want 401", w.Code, w.Body)
	}
	for _, bad := range []ServerJoinRequest{
		{Name: "b", PeerURL: "http://192.0.2.2:2380"},
		{Name: "b", PeerURL: "https://127.0.0.1:2380"},
		{Name: "b=c", PeerURL: "https://192.0.2.2:2380"},
		{Name: "", PeerURL: "https://192.0.2.2:2380"},
	} {
		if w := postServerJoin(t, s, secret, bad); w.Code != http.StatusBadRequest {
			t.Errorf("%+v: %d, want 400", bad, w.Code)
		}
	}
	if len(fm.added) != 0 {
		t.Fatalf("members added by refused requests: %v", fm.added)
	}
	w := postServerJoin(t, s, secret, good)
	if w.Code != http.StatusOK {
		t.Fatalf("server token: %d %s", w.Code, w.Body)
	}
	var resp ServerJoinResponse
	if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || string(resp.Bundle) != "sealed" || !strings.Contains(resp.InitialCluster, "b-192.0.2.2=https://192.0.2.2:2380") {
		t.Errorf("answer %+v %v", resp, err)
	}
	for range maxFailures {
		postServerJoin(t, s, "wrong-wrong-wrong-wrong", good)
	}
	if w := postServerJoin(t, s, secret, good); w.Code != http.StatusTooManyRequests {
		t.Errorf("after %d wrong tokens: %d, want 429", maxFailures, w.Code)
	}
	if len(fm.added) != 1 {
		t.Errorf("AddLearner called %d times, want 1", len(fm.added))
	}
}
