package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/skiffhq/skiff/gitsync"
	"github.com/skiffhq/skiff/reconciler/controller"
	"github.com/skiffhq/skiff/state"
)

// leaderLoop runs the leader's duties — the git fetch loop and the controllers — while
// this node leads, and stops them when it stops leading (k0s's leader-elected components).
type leaderLoop struct {
	a *Agent

	mu   sync.Mutex
	sy   *gitsync.Syncer
	ctrl *controller.Manager
	on   bool
}

func newLeaderLoop(a *Agent) *leaderLoop { return &leaderLoop{a: a} }

func (l *leaderLoop) run(ctx context.Context) {
	ch := l.a.raft.LeaderCh()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		l.reconcile(ctx)
		select {
		case <-ctx.Done():
			l.stop()
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

// reconcile starts or stops the leader's components to match who leads now.
func (l *leaderLoop) reconcile(ctx context.Context) {
	leading := l.a.store.IsLeader()
	l.mu.Lock()
	on := l.on
	l.mu.Unlock()
	switch {
	case leading && !on:
		// Everything committed by earlier leaders must be applied here before this node
		// decides anything: no decision is made twice, none is lost.
		if err := l.a.raft.Barrier(5 * time.Second).Error(); err != nil {
			l.a.log.Warn("leader barrier", "err", err)
			return
		}
		if err := l.start(ctx); err != nil {
			l.a.log.Error("start leader duties", "err", err)
			l.stop()
		}
	case !leading && on:
		l.a.log.Info("lost leadership; stopping fetch loop and controllers")
		l.stop()
	case leading && on:
		l.a.promoteVoters()
	}
}

func (l *leaderLoop) start(ctx context.Context) error {
	a := l.a
	cfg := gitsync.DefaultConfig()
	cfg.Repo, cfg.Ref, cfg.Path, cfg.Poll, cfg.Depth = a.cfg.Repo, a.cfg.Ref, a.cfg.Path, a.cfg.Poll.Duration, a.cfg.Depth
	cfg.Dir = a.gitDir()
	cfg.SSHKeyFile, cfg.KnownHostsFile = a.cfg.GitSSHKeyFile, a.cfg.GitKnownHostsFile
	cfg.Username, cfg.PasswordFile, cfg.TokenFile = a.cfg.GitUsername, a.cfg.GitPasswordFile, a.cfg.GitTokenFile
	sy, err := gitsync.New(cfg, &proposer{a: a}, a.log)
	if err != nil {
		return fmt.Errorf("gitsync: %w", err)
	}
	ctrl := controller.NewManager(a.store, a.events, a.health.ready, a.log)
	ctrl.SetNodeNotReadySince(a.health.notReadySince)
	ctrl.UnreachableToleration = a.cfg.UnreachableToleration.Duration
	ctrl.Services = a.allocConfig()
	if err := ctrl.Start(ctx); err != nil {
		return fmt.Errorf("controllers: %w", err)
	}
	l.mu.Lock()
	l.ctrl, l.on = ctrl, true
	l.mu.Unlock()
	a.health.setOnChange(ctrl.Trigger) // a node going NotReady is acted on at once
	a.storeFirstToken(ctx)
	if err := sy.Start(ctx); err != nil {
		return fmt.Errorf("gitsync: %w", err)
	}
	l.mu.Lock()
	l.sy = sy
	l.mu.Unlock()
	a.log.Info("leading: fetch loop and controllers running", "repo", a.cfg.Repo, "ref", a.cfg.Ref)
	return nil
}

func (l *leaderLoop) stop() {
	l.mu.Lock()
	sy, ctrl := l.sy, l.ctrl
	l.sy, l.ctrl, l.on = nil, nil, false
	l.mu.Unlock()
	l.a.health.setOnChange(nil)
	if sy != nil {
		_ = sy.Stop()
	}
	if ctrl != nil {
		_ = ctrl.Stop()
	}
}

func (l *leaderLoop) syncer() *gitsync.Syncer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.sy
}

// trigger asks the fetch loop to fetch now (webhooks).
func (l *leaderLoop) trigger() {
	if sy := l.syncer(); sy != nil {
		sy.Trigger()
	}
}

// proposer turns what the fetch loop found into Raft commands: a good commit becomes
// live, a bad one is recorded as the failure while the last good commit stays live.
type proposer struct{ a *Agent }

var _ gitsync.Proposer = (*proposer)(nil)

func (p *proposer) Propose(ctx context.Context, b gitsync.Bundle) error {
	s := p.a.store.State()
	now := time.Now().UTC()
	if b.Err != nil || b.Problems.HasErrors() {
		f := &state.Failure{Commit: b.Commit, At: now, Problems: b.Problems.Errors()}
		if b.Err != nil {
			f.Error = b.Err.Error()
		}
		if f.Same(s.Failed) {
			return nil // already recorded: do not write the same failure on every poll
		}
		p.a.log.Warn("commit not applied; the last good commit stays live",
			"commit", short(b.Commit.Hash), "live", short(s.Live.Hash), "error", f.Error, "problems", len(f.Problems))
		return p.a.store.Apply(ctx, &state.Command{At: now, Reject: f})
	}
	if b.Commit.Hash == s.Live.Hash {
		if s.Failed != nil {
			return p.a.store.Apply(ctx, &state.Command{At: now, ClearFailure: true})
		}
		return nil
	}
	commit := b.Commit
	commit.Problems = b.Problems
	p.a.log.Info("applying commit", "commit", short(commit.Hash), "subject", commit.Subject, "objects", len(b.Objects))
	return p.a.store.Apply(ctx, &state.Command{At: now, Sync: &state.Sync{Commit: commit, Objects: state.Wrap(b.Objects...)}})
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}
