package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Push payloads as GitHub, Gitea and GitLab send them (trimmed).
const (
	githubPush = `{"ref":"refs/heads/main","before":"6113728f27ae82c7b1a177c8d03f9e96e0adf246",
"after":"59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5","repository":{"id":1,"full_name":"acme/edge",
"clone_url":"https://github.com/acme/edge.git"},"pusher":{"name":"alice"},"commits":[{"id":
"59b20b8d5c6ff8d09518454d4dd8b7b30f095ab5","message":"scale web","added":[],"modified":["deploy/web.yaml"]}]}`
	giteaPush = `{"ref":"refs/heads/main","before":"28e1879d029cb852e4844d9c718537df08844e03",
"after":"bffeb74224043ba2feb48d137756c8a9331c449a","compare_url":"http://gitea.lan/acme/edge/compare/28e1879d...bffeb742",
"commits":[{"id":"bffeb74224043ba2feb48d137756c8a9331c449a","message":"bump\n","url":
"http://gitea.lan/acme/edge/commit/bffeb742"}],"repository":{"id":140,"name":"edge","full_name":"acme/edge"},
"pusher":{"login":"alice"},"sender":{"login":"alice"}}`
	gitlabPush = `{"object_kind":"push","event_name":"push","before":"95790bf891e76fee5e1747ab589903a6a1f80f22",
"after":"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","ref":"refs/heads/main","checkout_sha":
"da1560886d4f094c3e6c9ef40349f7d38b5d27d7","user_name":"Alice","project":{"id":15,"name":"edge",
"git_http_url":"http://gitlab.lan/acme/edge.git"},"commits":[],"total_commits_count":0}`
	githubPing = `{"zen":"Keep it logically awesome.","hook_id":1}`
)

func hmacHex(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return hex.EncodeToString(m.Sum(nil))
}

func TestWebhook(t *testing.T) {
	const secret = "s3cret"
	form := "payload=" + url.QueryEscape(githubPush)
	tests := []struct {
		name        string
		secret      string
		method      string
		headers     map[string]string
		body        string
		wantCode    int
		wantTrigger bool
	}{
		{name: "github signed", secret: secret, headers: map[string]string{"X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + hmacHex(secret, githubPush), "Content-Type": "application/json"},
			body: githubPush, wantCode: 202, wantTrigger: true},
		{name: "github signed form", secret: secret, headers: map[string]string{"X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + hmacHex(secret, form), "Content-Type": "application/x-www-form-urlencoded"},
			body: form, wantCode: 202, wantTrigger: true},
		{name: "github wrong signature", secret: secret, headers: map[string]string{"X-GitHub-Event": "push",
			"X-Hub-Signature-256": "sha256=" + hmacHex("other", githubPush)}, body: githubPush, wantCode: 401},
		{name: "github signature without prefix", secret: secret, headers: map[string]string{
			"X-Hub-Signature-256": hmacHex(secret, githubPush)}, body: githubPush, wantCode: 401},
		{name: "github body changed", secret: secret, headers: map[string]string{
			"X-Hub-Signature-256": "sha256=" + hmacHex(secret, githubPush)}, body: githubPush + " ", wantCode: 401},
		{name: "github ping", secret: secret, headers: map[string]string{"X-GitHub-Event": "ping",
			"X-Hub-Signature-256": "sha256=" + hmacHex(secret, githubPing)}, body: githubPing, wantCode: 200},
		{name: "gitea signed", secret: secret, headers: map[string]string{"X-Gitea-Event": "push",
			"X-Gitea-Signature": hmacHex(secret, giteaPush)}, body: giteaPush, wantCode: 202, wantTrigger: true},
		{name: "gogs signed", secret: secret, headers: map[string]string{"X-Gogs-Event": "push",
			"X-Gogs-Signature": hmacHex(secret, giteaPush)}, body: giteaPush, wantCode: 202, wantTrigger: true},
		{name: "gitea wrong signature", secret: secret, headers: map[string]string{
			"X-Gitea-Signature": hmacHex(secret, "x")}, body: giteaPush, wantCode: 401},
		{name: "gitea signature not hex", secret: secret, headers: map[string]string{
			"X-Gitea-Signature": "zz"}, body: giteaPush, wantCode: 401},
		{name: "gitlab token", secret: secret, headers: map[string]string{"X-Gitlab-Event": "Push Hook",
			"X-Gitlab-Token": secret}, body: gitlabPush, wantCode: 202, wantTrigger: true},
		{name: "gitlab wrong token", secret: secret, headers: map[string]string{"X-Gitlab-Event": "Push Hook",
			"X-Gitlab-Token": "s3cre"}, body: gitlabPush, wantCode: 401},
		{name: "unsigned with secret", secret: secret, body: githubPush, wantCode: 401},
		{name: "empty body signed", secret: secret, headers: map[string]string{
			"X-Hub-Signature-256": "sha256=" + hmacHex(secret, "")}, wantCode: 202, wantTrigger: true},
		{name: "empty body without secret", wantCode: 202, wantTrigger: true},
		{name: "github without secret", headers: map[string]string{"X-GitHub-Event": "push"}, body: githubPush,
			wantCode: 202, wantTrigger: true},
		{name: "not JSON without secret", body: "hello", wantCode: 202, wantTrigger: true},
		{name: "GET", method: http.MethodGet, wantCode: 405},
		{name: "too large", body: strings.Repeat("x", MaxWebhookBody+1), wantCode: 413},
		{name: "too large signed", secret: secret, headers: map[string]string{
			"X-Gitlab-Token": secret}, body: strings.Repeat("x", MaxWebhookBody+1), wantCode: 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			triggers := 0
			h := WebhookHandler([]byte(tt.secret), func() { triggers++ }, testLog(t))
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			req := httptest.NewRequest(method, "/hooks/git", strings.NewReader(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantCode {
				t.Errorf("%s: code = %d; want %d (body %s)", tt.name, rec.Code, tt.wantCode, rec.Body)
			}
			if want := map[bool]int{true: 1, false: 0}[tt.wantTrigger]; triggers != want {
				t.Errorf("%s: triggered %d times; want %d", tt.name, triggers, want)
			}
			var resp map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil || resp["status"] == "" {
				t.Errorf("%s: body %q is not {\"status\": ...}: %v", tt.name, rec.Body, err)
			}
			if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s: content type %q; want application/json", tt.name, ct)
			}
		})
	}
}

// TestWebhookTriggersSync: a webhook makes a running syncer fetch the new commit.
func TestWebhookTriggersSync(t *testing.T) {
	r := newRepo(t)
	cfg := testConfig(t, r.URL())
	p := &proposer{}
	s := start(t, cfg, p)
	eventually(t, "first proposal", func() bool { return p.count() == 1 })
	srv := httptest.NewServer(WebhookHandler([]byte("k"), s.Trigger, testLog(t)))
	t.Cleanup(srv.Close)

	head := r.Commit("pushed")
	req, err := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(""))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Gitlab-Token", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook status %d; want 202", resp.StatusCode)
	}
	eventually(t, "the pushed commit proposed", func() bool { return p.last(t).Commit.Hash == head })
}
