package agent

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The Raft log and snapshots hold Secrets (and Ingress TLS keys) and live on disk, so every
// entry and snapshot is sealed with the cluster's data key (AES-256-GCM). The key is made
// by the first node and handed to others at join over TLS; it never enters the log.
const (
	sealedV1    = 0x01 // entry = 0x01 | nonce | ciphertext
	dataKeyFile = "data.key"
)

type logCipher struct{ aead cipher.AEAD }

func newLogCipher(key []byte) (*logCipher, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("cluster data key: %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &logCipher{aead: aead}, nil
}

func newDataKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return k
}

func encodeKey(k []byte) string { return hex.EncodeToString(k) }

func decodeKey(s string) ([]byte, error) { return hex.DecodeString(strings.TrimSpace(s)) }

// seal encrypts a log entry or snapshot.
func (c *logCipher) seal(plain []byte) []byte {
	out := make([]byte, 1+c.aead.NonceSize(), 1+c.aead.NonceSize()+len(plain)+c.aead.Overhead())
	out[0] = sealedV1
	if _, err := rand.Read(out[1:]); err != nil {
		panic(err)
	}
	return c.aead.Seal(out, out[1:], plain, nil)
}

// open decrypts what seal made.
func (c *logCipher) open(b []byte) ([]byte, error) {
	if len(b) == 0 || b[0] != sealedV1 {
		return nil, errors.New("log entry is not sealed with the cluster data key")
	}
	n := c.aead.NonceSize()
	if len(b) < 1+n {
		return nil, errors.New("sealed log entry is truncated")
	}
	plain, err := c.aead.Open(nil, b[1:1+n], b[1+n:], nil)
	if err != nil {
		return nil, fmt.Errorf("open sealed log entry (wrong cluster data key?): %w", err)
	}
	return plain, nil
}

// readAllSealed reads a sealed snapshot stream.
func (c *logCipher) readAllSealed(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	return c.open(b)
}
