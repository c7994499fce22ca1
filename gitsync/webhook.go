package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// MaxWebhookBody is the largest webhook request body read; larger ones get 413.
const MaxWebhookBody = 1 << 20

// WebhookHandler answers git hosting push webhooks (POST /hooks/git) by calling trigger,
// which must not block (Syncer.Trigger). It accepts GitHub (X-Hub-Signature-256), Gitea and
// Gogs (X-Gitea-Signature, X-Gogs-Signature: hex HMAC-SHA256 of the body) and GitLab
// (X-Gitlab-Token) payloads, and an empty body. With a secret, a request without a valid
// signature or token gets 401 and triggers nothing. The payload itself is only logged:
// gitsync fetches its configured ref whatever was pushed.
func WebhookHandler(secret []byte, trigger func(), log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			reply(w, http.StatusMethodNotAllowed, "method not allowed")
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				reply(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB")
				return
			}
			reply(w, http.StatusBadRequest, "cannot read body")
			return
		}
		if len(secret) > 0 && !authentic(secret, r.Header, body) {
			log.Warn("webhook refused: no valid signature or token", "remote", r.RemoteAddr)
			reply(w, http.StatusUnauthorized, "invalid or missing signature")
			return
		}
		ev := event(r.Header)
		if ev == "ping" {
			reply(w, http.StatusOK, "pong")
			return
		}
		p := pushOf(r.Header.Get("Content-Type"), body)
		log.Info("webhook: fetching", "event", ev, "ref", p.Ref, "after", p.After, "remote", r.RemoteAddr)
		trigger()
		reply(w, http.StatusAccepted, "sync triggered")
	})
}

// authentic checks the request against the secret; every comparison is constant-time.
func authentic(secret []byte, h http.Header, body []byte) bool {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	sum := mac.Sum(nil)
	if sig := h.Get("X-Hub-Signature-256"); sig != "" {
		hexSig, ok := strings.CutPrefix(sig, "sha256=")
		return ok && hexEqual(sum, hexSig)
	}
	for _, name := range []string{"X-Gitea-Signature", "X-Gogs-Signature"} {
		if sig := h.Get(name); sig != "" {
			return hexEqual(sum, sig)
		}
	}
	if tok := h.Get("X-Gitlab-Token"); tok != "" {
		return subtle.ConstantTimeCompare([]byte(tok), secret) == 1
	}
	return false
}

func hexEqual(sum []byte, sig string) bool {
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	return err == nil && hmac.Equal(sum, got)
}

// event names the webhook event from whichever host sent it.
func event(h http.Header) string {
	for _, name := range []string{"X-GitHub-Event", "X-Gitea-Event", "X-Gogs-Event", "X-Gitlab-Event"} {
		if v := h.Get(name); v != "" {
			return strings.ToLower(v)
		}
	}
	return "push"
}

// push is the part of a push payload worth logging (the same fields on every host).
type push struct {
	Ref   string `json:"ref"`
	After string `json:"after"`
}

func pushOf(contentType string, body []byte) push {
	var p push
	if mt, _, _ := mime.ParseMediaType(contentType); mt == "application/x-www-form-urlencoded" {
		form, err := url.ParseQuery(string(body))
		if err != nil {
			return p
		}
		body = []byte(form.Get("payload"))
	}
	_ = json.Unmarshal(body, &p) // best effort: an empty or odd body still triggers
	return p
}

func reply(w http.ResponseWriter, code int, status string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"status": status})
}
