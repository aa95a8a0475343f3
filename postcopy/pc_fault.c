// SPDX-License-Identifier: MIT
/*
 * The post-copy fault server: one thread per incoming VM that reads the
 * guest's userfaultfd and resolves each fault with a one-sided read of the
 * page from a holder: the source's registered memory, or a relay's copy
 * where it is current (the holder relay/ says would serve it first).
 *
 * fault(p) -> claim p in `present` -> fab_read(p) on the fault endpoint
 *   -> COPY mode:     read into a registered staging page, UFFDIO_COPY
 *   -> CONTINUE mode: read straight into the memfd page through ferryd's
 *                     mapping, UFFDIO_CONTINUE (zero-copy)
 * A hole on the source is UFFDIO_ZEROPAGE, no read.
 *
 * Faults travel on their own endpoint and domain, never behind the
 * background puller's reads (QEMU's postcopy-preempt). `present` is the
 * claim protocol between the two: whoever flips a page's bit from 0 to 1
 * places that page, and places it atomically for the guest (the puller with
 * UFFDIO_COPY, we by writing before CONTINUE). A fault on a page someone
 * else claimed is answered by CONTINUE (EEXIST: WAKE) once the page is
 * there, retried until it is.
 *
 * A holder that stops answering: reads time out (the domain's
 * op_timeout_ms) or the endpoint fails; the faults stay pending (the vCPUs
 * wait, nothing is killed), are reposted with backoff, and the stall is
 * timed. pc_fault_set_holder() points the server at a new endpoint.
 * A relay that fails a read is used no more: its faults go to the source.
 */
#include <errno.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define LOG_PREFIX "fault: "
#include "common/log.h"
#include "common/util.h"
#include "postcopy/pc_int.h"

static unsigned hist_idx(uint64_t v)
{
	unsigned msb;

	if (v < (1ULL << HSUB))
		return v;
	msb = 63 - __builtin_clzll(v);
	return ((msb - HSUB + 1) << HSUB) + ((v >> (msb - HSUB)) & 63);
}

/* The smallest value of bucket i (its upper bound is the next one's). */
static uint64_t hist_val(unsigned i)
{
	unsigned e = i >> HSUB;

	if (!e)
		return i;
	return (64ULL + (i & 63)) << (e - 1);
}

uint64_t pc_hist_pct(const uint32_t *h, uint64_t n, double pct)
{
	uint64_t want = (uint64_t)(n * pct / 100.0 + 0.5), seen = 0;
	unsigned i;

	if (!want)
		want = 1;
	for (i = 0; i < HBUCKETS; i++) {
		seen += h[i];
		if (seen >= want)
			return hist_val(i);
	}
	return 0;
}

static void account(struct pc_fault *fs, struct slot *s, uint64_t now)
{
	unsigned i, k;

	pthread_mutex_lock(&fs->lock);
	for (i = 0; i < s->nwait; i++) {
		uint64_t d = now - s->w[i].t0;
		unsigned b = hist_idx(d);

		fs->hist[b < HBUCKETS ? b : HBUCKETS - 1]++;
		fs->st.served++;
		fs->st.blocktime_ns += d;
		if (d > fs->st.max_ns)
			fs->st.max_ns = d;
		if (!s->w[i].tid)
			continue;
		for (k = 0; k < PC_FAULT_VCPUS; k++) {
			if (fs->tids[k].tid == s->w[i].tid || !fs->tids[k].tid)
				break;
		}
		if (k < PC_FAULT_VCPUS) {
			fs->tids[k].tid = s->w[i].tid;
			fs->tids[k].ns += d;
		}
	}
	pthread_mutex_unlock(&fs->lock);
}

static void slot_free(struct pc_fault *fs, struct slot *s)
{
	if (s->posted) {
		fs->inflight--;
		if (s->prepage)
			fs->inflight_pre--;
	}
	s->kind = SLOT_FREE;
	s->posted = false;
	s->nwait = 0;
	pthread_mutex_lock(&fs->lock);
	fs->st.busy--;
	pthread_mutex_unlock(&fs->lock);
}

static struct slot *slot_find(struct pc_fault *fs, uint64_t page)
{
	unsigned i;

	for (i = 0; i < SLOTS; i++) {
		if (fs->slot[i].kind != SLOT_FREE && fs->slot[i].page == page)
			return &fs->slot[i];
	}
	return NULL;
}

static struct slot *slot_get(struct pc_fault *fs, enum slot_kind kind,
			     uint64_t page)
{
	unsigned i;

	for (i = 0; i < SLOTS; i++) {
		struct slot *s = &fs->slot[i];

		if (s->kind != SLOT_FREE)
			continue;
		memset(s, 0, sizeof(*s));
		s->kind = kind;
		pthread_mutex_lock(&fs->lock);
		fs->st.busy++;
		pthread_mutex_unlock(&fs->lock);
		s->page = page;
		s->buf = fs->p.mode == PC_FAULT_COPY
				 ? fs->staging + i * FY_PAGE_SIZE
				 : fs->p.map + page * FY_PAGE_SIZE;
		return s;
	}
	return NULL;
}

static uint64_t uaddr(const struct pc_fault *fs, uint64_t page)
{
	return fs->p.uffd_base + page * FY_PAGE_SIZE;
}

static void wake(struct pc_fault *fs, uint64_t page)
{
	struct uffdio_range r = { uaddr(fs, page), FY_PAGE_SIZE };

	if (ioctl(fs->p.uffd, UFFDIO_WAKE, &r) && errno != ENOENT)
		pr_perror("UFFDIO_WAKE %llu", (unsigned long long)page);
}

static bool placed(const struct pc_fault *fs, uint64_t page)
{
	return !fs->p.placed ||
	       (__atomic_load_n(&fs->p.placed[page / 64], __ATOMIC_ACQUIRE) &
		(1ULL << (page % 64)));
}

static void set_placed(struct pc_fault *fs, uint64_t page)
{
	if (fs->p.placed)
		__atomic_fetch_or(&fs->p.placed[page / 64], 1ULL << (page % 64),
				  __ATOMIC_RELEASE);
}

/*
 * Map a page that is in the memfd. 0 when the guest may go on, -EAGAIN
 * when the page is not there yet, or not complete (not placed), or the mm
 * is busy: try again later.
 */
static int cont(struct pc_fault *fs, uint64_t page)
{
	struct uffdio_continue c = {
		.range = { uaddr(fs, page), FY_PAGE_SIZE },
		.mode = fs->p.wp ? UFFDIO_CONTINUE_MODE_WP : 0,
	};

	if (!placed(fs, page))
		return -EAGAIN;

	if (!ioctl(fs->p.uffd, UFFDIO_CONTINUE, &c))
		return 0;
	if (errno == EEXIST) {
		/* mapped already: whoever mapped it may not have woken us */
		wake(fs, page);
		return 0;
	}
	if (errno == ENOENT || errno == ESRCH)
		return 0; /* the VM is gone or its RAM unregistered */
	return -EAGAIN;
}

/* Place a page whose contents just arrived in s->buf; 0 or -EAGAIN. */
static int place(struct pc_fault *fs, struct slot *s)
{
	if (fs->p.mode == PC_FAULT_CONTINUE) {
		set_placed(fs, s->page);
		if (!fs->p.minor) {
			/* MISSING-only: nobody faults on a page in the cache */
			return 0;
		}
		return cont(fs, s->page);
	}
	struct uffdio_copy c = { .dst = uaddr(fs, s->page),
				 .src = (uintptr_t)s->buf,
				 .len = FY_PAGE_SIZE,
				 .mode = fs->p.wp ? UFFDIO_COPY_MODE_WP : 0 };
	if (!ioctl(fs->p.uffd, UFFDIO_COPY, &c)) {
		set_placed(fs, s->page);
		return 0;
	}
	if (errno == EEXIST && !placed(fs, s->page)) {
		/*
		 * In the page cache, not complete: allocated ahead by the
		 * puller's populator. Ours (we claimed it): fill it, map it.
		 */
		memcpy(fs->p.map + s->page * FY_PAGE_SIZE, s->buf,
		       FY_PAGE_SIZE);
		set_placed(fs, s->page);
	}
	if (errno == EEXIST)
		return cont(fs, s->page) ? -EAGAIN : 0;
	if (errno == ENOENT || errno == ESRCH)
		return 0;
	return -EAGAIN;
}

static void stall_begin(struct pc_fault *fs, uint64_t now, int err)
{
	if (!fs->stalled) {
		pr_warn("holder read failed (%s): faults wait, retrying",
			strerror(-err));
		fs->backoff = BACKOFF_MIN_NS;
		pthread_mutex_lock(&fs->lock);
		fs->stalled = true;
		fs->stall_t0 = now;
		fs->st.stalls++;
		fs->st.stalled = true;
		pthread_mutex_unlock(&fs->lock);
	} else if (fs->backoff < BACKOFF_MAX_NS) {
		fs->backoff *= 2;
	}
	fs->next_retry = now + fs->backoff;
}

static void stall_end(struct pc_fault *fs, uint64_t now)
{
	if (!fs->stalled)
		return;
	pthread_mutex_lock(&fs->lock);
	fs->stalled = false;
	fs->st.stall_ns += now - fs->stall_t0;
	fs->st.stalled = false;
	pthread_mutex_unlock(&fs->lock);
	pr_info("holder answers again after %.3f s",
		(now - fs->stall_t0) / 1e9);
}

/* Whether a read the provider still holds may land in our buffers. */
static bool bufs_busy(const struct pc_fault *fs)
{
	if (fs->p.mode == PC_FAULT_COPY)
		return fab_mem_busy(fs->p.dom, fs->staging,
				    SLOTS * FY_PAGE_SIZE);
	return fab_mem_busy(fs->p.dom, fs->p.map, fs->p.pages * FY_PAGE_SIZE);
}

/* Relay h failed a read: used no more (logged once), its faults wait. */
static void relay_lost(struct pc_fault *fs, unsigned h, int err)
{
	rly_holder_down(fs->rly, h, true);
	/* its reads may still land in our buffers: none posted until then */
	fs->held = bufs_busy(fs);
	if (fs->lost[h - 1])
		return;
	fs->lost[h - 1] = true;
	pr_warn("relay %u failed a read (%s): its pages come from the source",
		h, strerror(-err));
	pthread_mutex_lock(&fs->lock);
	fs->st.relays_down++;
	pthread_mutex_unlock(&fs->lock);
}

/* s's read is in flight, as the scheduler took it. */
static void posted(struct pc_fault *fs, struct slot *s, struct rly_read *rd,
		   uint64_t now)
{
	if (fs->rly)
		rly_take(fs->rly, rd, now); /* SLOTS < RLY_INFLIGHT_MAX */
	s->rd = *rd;
	s->posted = true;
	s->t_post = now;
	fs->inflight++;
	if (s->prepage)
		fs->inflight_pre++;
}

static void post(struct pc_fault *fs, struct slot *s, uint64_t now)
{
	struct fab_mr *mr = fs->p.mode == PC_FAULT_COPY ? fs->stage_mr
							: fs->map_mr;
	struct rly_read rd = { .start = s->page, .pages = 1, .seg = -1 };
	int ret;

	if (s->posted)
		return;
	if (fs->held) {
		if (bufs_busy(fs))
			return;
		fs->held = false;
	}
	if (fs->rly && !rly_choose(fs->rly, s->page, 1, &rd) &&
	    rd.holder != RLY_SOURCE) {
		struct pc_fault_relay *rl = &fs->p.relay[rd.holder - 1];

		ret = fab_read(rl->ep, s->buf, FY_PAGE_SIZE, mr, &rl->rkey,
			       s->page * FY_PAGE_SIZE, s);
		if (!ret)
			posted(fs, s, &rd, now);
		else if (ret != -EAGAIN)
			relay_lost(fs, rd.holder,
				   ret); /* retry(): the source */
		return;
	}
	rd.holder = RLY_SOURCE;
	if (!fs->ep || (fs->stalled && now < fs->next_retry))
		return;
	ret = fab_read(fs->ep, s->buf, FY_PAGE_SIZE, mr, &fs->rkey,
		       s->page * FY_PAGE_SIZE, s);
	if (!ret)
		posted(fs, s, &rd, now);
	else if (ret != -EAGAIN)
		stall_begin(fs, now, ret);
}

static void prepage_queue(struct pc_fault *fs, uint64_t page)
{
	pthread_mutex_lock(&fs->lock);
	if (fs->pq_tail - fs->pq_head < PREPAGE_Q) {
		fs->pq[fs->pq_tail++ % PREPAGE_Q] = page;
		fs->st.prepage_queued++;
	}
	pthread_mutex_unlock(&fs->lock);
}

/*
 * Pre-paging around a fault: faults close to the previous one (a guest
 * walking memory) double the window, a fault elsewhere halves it, and a
 * quiet spell shrinks it too (in the idle path).
 */
static void prepage_around(struct pc_fault *fs, uint64_t page, uint64_t now)
{
	uint64_t last = fs->last_fault_page, w = fs->window, p, n = 0;
	unsigned max = fs->p.prepage_max;

	if (!max)
		return;
	if (fs->last_fault_t && page + 2 * w >= last && page <= last + 2 * w)
		fs->window = w * 2 > max ? max : w * 2;
	else if (w > 1)
		fs->window = w / 2;
	fs->last_fault_page = page;
	fs->last_fault_t = now;
	for (p = page + 1; p < fs->p.pages && n < fs->window; p++, n++) {
		if (present_test(fs, p) ||
		    (fs->p.holes && fy_bit_test(fs->p.holes, p)))
			continue;
		prepage_queue(fs, p);
	}
	pthread_mutex_lock(&fs->lock);
	fs->st.window = fs->window;
	pthread_mutex_unlock(&fs->lock);
}

static void zero(struct pc_fault *fs, uint64_t page, const struct waiter *w,
		 uint64_t now)
{
	struct uffdio_zeropage z = { .range = { uaddr(fs, page),
						FY_PAGE_SIZE } };
	struct slot tmp = { .nwait = 1, .w = { *w } };

	if (ioctl(fs->p.uffd, UFFDIO_ZEROPAGE, &z) && errno == EEXIST) {
		if (!placed(fs, page))
			memset(fs->p.map + page * FY_PAGE_SIZE, 0,
			       FY_PAGE_SIZE);
		set_placed(fs, page);
		cont(fs, page);
	} else {
		set_placed(fs, page);
	}
	pthread_mutex_lock(&fs->lock);
	fs->st.zero_pages++;
	pthread_mutex_unlock(&fs->lock);
	account(fs, &tmp, now);
}

static void attach(struct slot *s, const struct waiter *w)
{
	if (s->nwait < WAITERS)
		s->w[s->nwait++] = *w;
}

static void fault(struct pc_fault *fs, const struct uffd_msg *m, uint64_t now)
{
	uint64_t addr = m->arg.pagefault.address & ~(FY_PAGE_SIZE - 1);
	uint64_t page = (addr - fs->p.uffd_base) / FY_PAGE_SIZE;
	struct waiter w = { now, m->arg.pagefault.feat.ptid };
	bool minor = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR;
	struct slot *s;

	if (addr < fs->p.uffd_base || page >= fs->p.pages) {
		pr_err("fault outside guest RAM at %#llx",
		       (unsigned long long)addr);
		return;
	}
	pthread_mutex_lock(&fs->lock);
	if (minor)
		fs->st.minor++;
	else
		fs->st.missing++;
	pthread_mutex_unlock(&fs->lock);

	s = slot_find(fs, page);
	if (s) {
		/* ours in flight (a MINOR fault may see a half-read page) */
		attach(s, &w);
		if (s->prepage) {
			s->prepage = false;
			if (s->posted)
				fs->inflight_pre--;
		}
		return;
	}
	if (minor) {
		/* in the memfd and complete: pre-copied or placed */
		struct slot tmp = { .nwait = 1, .w = { w } };

		if (!cont(fs, page)) {
			account(fs, &tmp, fy_now_ns());
			return;
		}
	}
	/*
	 * MISSING, or MINOR on a page in the memfd that is not placed (the
	 * puller's populator allocated it ahead): ours if nobody claimed it.
	 */
	if (!minor || fs->p.placed) {
		prepage_around(fs, page, now);
		if (present_claim(fs, page)) {
			if (fs->p.holes && fy_bit_test(fs->p.holes, page)) {
				zero(fs, page, &w, fy_now_ns());
				return;
			}
			s = slot_get(fs, SLOT_READ, page);
			if (!s) {
				/* cannot happen with SLOTS > vCPUs + pre-page */
				pr_err("no slot for page %llu",
				       (unsigned long long)page);
				return;
			}
			attach(s, &w);
			post(fs, s, now);
			return;
		}
		struct slot tmp = { .nwait = 1, .w = { w } };

		if (!minor && !cont(fs, page)) {
			account(fs, &tmp, fy_now_ns());
			return;
		}
	}
	/* claimed by the puller, not there yet: retry until it is */
	s = slot_get(fs, SLOT_OTHER, page);
	if (s)
		attach(s, &w);
}

static void complete(struct pc_fault *fs, const struct fab_cqe *c, uint64_t now)
{
	struct slot *s = c->ctx;

	if (!s || s->kind != SLOT_READ || !s->posted)
		return;
	s->posted = false;
	fs->inflight--;
	if (s->prepage)
		fs->inflight_pre--;
	if (fs->rly && c->status)
		rly_fail(fs->rly, &s->rd, false);
	else if (fs->rly)
		rly_done(fs->rly, &s->rd, now);
	if (c->status && s->rd.holder != RLY_SOURCE) {
		/* stays a pending read: reposted, to another holder */
		relay_lost(fs, s->rd.holder, c->status);
		return;
	}
	if (c->status) {
		/* stays a pending read: reposted after the backoff */
		stall_begin(fs, now, c->status);
		return;
	}
	if (s->rd.holder == RLY_SOURCE)
		stall_end(fs, now);
	pthread_mutex_lock(&fs->lock);
	fs->st.pages_from[s->rd.holder]++;
	pthread_mutex_unlock(&fs->lock);
	if (place(fs, s)) {
		/* rare: mm busy; keep the page, retry placing */
		s->kind = SLOT_OTHER;
		return;
	}
	now = fy_now_ns();
	if (s->prepage) {
		pthread_mutex_lock(&fs->lock);
		fs->st.prepaged++;
		pthread_mutex_unlock(&fs->lock);
	}
	account(fs, s, now);
	slot_free(fs, s);
}

/*
 * Swap in a holder from pc_fault_set_holder(). True when it did: the reads
 * in flight are cancelled and their slots wait for retry() to post them
 * again, or no fault would ever resolve (the vCPUs wait, fault no more).
 */
static bool swap_holder(struct pc_fault *fs, uint64_t now)
{
	struct fab_cqe cqe[16];
	unsigned i;
	int n;

	pthread_mutex_lock(&fs->lock);
	if (!fs->have_new) {
		pthread_mutex_unlock(&fs->lock);
		return false;
	}
	fab_ep_close(fs->ep); /* its reads complete with -ECANCELED here */
	fs->ep = fs->new_ep;
	fs->rkey = fs->new_rkey;
	fs->new_ep = NULL;
	fs->have_new = false;
	fs->st.holder_swaps++;
	pthread_mutex_unlock(&fs->lock);
	/*
	 * The old endpoint's reads were reported cancelled, in the domain's
	 * queue: drop those completions before reposting the same slots (a
	 * relay's are what they say).
	 */
	while ((n = fab_poll(fs->p.dom, cqe, ARRAY_SIZE(cqe), 0)) > 0)
		for (i = 0; i < (unsigned)n; i++) {
			struct slot *s = cqe[i].ctx;

			if (s && s->rd.holder != RLY_SOURCE)
				complete(fs, &cqe[i], now);
		}
	fs->held = bufs_busy(fs);
	if (fs->held)
		pr_warn("old holder's reads still held: faults wait");
	for (i = 0; i < SLOTS; i++) {
		struct slot *s = &fs->slot[i];

		if (s->posted && s->rd.holder == RLY_SOURCE) {
			if (fs->rly)
				rly_fail(fs->rly, &s->rd, false);
			s->posted = false;
			fs->inflight--;
			if (s->prepage)
				fs->inflight_pre--;
		}
	}
	fs->next_retry = now; /* no backoff for a fresh holder */
	return true;
}

/* Our own low-priority pre-paging, when nothing else is in flight. */
static void prepage_self(struct pc_fault *fs, uint64_t now)
{
	uint64_t page;
	struct slot *s;

	while (fs->inflight_pre < PREPAGE_SELF_MAX && fs->inflight == 0 &&
	       !fs->stalled) {
		if (pc_fault_prepage_take(fs, &page, 1) != 1)
			return;
		if (!present_claim(fs, page))
			continue;
		s = slot_get(fs, SLOT_READ, page);
		if (!s) {
			__atomic_fetch_and(&fs->p.present[page / 64],
					   ~(1ULL << (page % 64)),
					   __ATOMIC_RELEASE);
			return;
		}
		s->prepage = true;
		post(fs, s, now);
		if (!s->posted) {
			__atomic_fetch_and(&fs->p.present[page / 64],
					   ~(1ULL << (page % 64)),
					   __ATOMIC_RELEASE);
			slot_free(fs, s);
			return;
		}
	}
}

/* Retry what waits: reads to (re)post, pages the puller claimed. */
static bool retry(struct pc_fault *fs, uint64_t now)
{
	bool pending = false;
	unsigned i;

	for (i = 0; i < SLOTS; i++) {
		struct slot *s = &fs->slot[i];

		if (s->kind == SLOT_READ && !s->posted) {
			post(fs, s, now);
			pending = true;
		} else if (s->kind == SLOT_OTHER) {
			if (!cont(fs, s->page)) {
				account(fs, s, fy_now_ns());
				slot_free(fs, s);
			} else {
				pending = true;
			}
		}
	}
	return pending;
}

size_t pc_fault_prepage_take(struct pc_fault *fs, uint64_t *pages, size_t max)
{
	size_t n = 0;

	pthread_mutex_lock(&fs->lock);
	while (n < max && fs->pq_head != fs->pq_tail) {
		uint64_t p = fs->pq[fs->pq_head++ % PREPAGE_Q];

		if (!present_test(fs, p))
			pages[n++] = p;
	}
	fs->st.prepage_taken += n;
	pthread_mutex_unlock(&fs->lock);
	return n;
}

void *pc_fault_thread(void *arg)
{
	struct pc_fault *fs = arg;
	struct pollfd pfd = { .fd = fs->p.uffd, .events = POLLIN };
	struct uffd_msg msg[16];
	struct fab_cqe cqe[16];
	uint64_t now, last_act = fy_now_ns(), last_poll = 0;
	uint64_t spin_ns = fs->p.spin_us < 0 ? 0 : fs->p.spin_us * 1000ULL;
	bool pending = false;
	ssize_t n, i;
	int got, k;

	while (!atomic_load(&fs->stop)) {
		bool act = false;

		now = fy_now_ns();
		if (swap_holder(fs, now))
			pending = true;
		n = read(fs->p.uffd, msg, sizeof(msg));
		for (i = 0; n > 0 && i < n / (ssize_t)sizeof(msg[0]); i++) {
			if (msg[i].event == UFFD_EVENT_PAGEFAULT)
				fault(fs, &msg[i], now);
			act = true;
		}
		/*
		 * held: only our polls return them (no progress thread); and
		 * now and then when idle, for the domain's own events (verbs:
		 * a device removed is let go of from a poll: fab_verbs_reset.c)
		 */
		if (fs->inflight || fs->held || now - last_poll > DOM_POLL_NS) {
			last_poll = now;
			got = fab_poll(fs->p.dom, cqe, ARRAY_SIZE(cqe), 0);
			for (k = 0; k < got; k++)
				complete(fs, &cqe[k], now = fy_now_ns());
			act |= got > 0;
		}
		now = fy_now_ns();
		if (act || pending)
			pending = retry(fs, now);
		if (fs->p.prepage_self)
			prepage_self(fs, now);
		if (act) {
			last_act = now;
			continue;
		}
		if (fs->window > 1 && fs->last_fault_t &&
		    now - fs->last_fault_t > IDLE_SHRINK_NS) {
			fs->window /= 2;
			fs->last_fault_t = now;
		}
		if (fs->stalled && !fs->inflight) {
			/* waiting out the backoff: sleep, but see faults */
			int ms = fs->next_retry > now
					 ? (int)((fs->next_retry - now) /
						 1000000)
					 : 0;

			poll(&pfd, 1, ms > 10 ? 10 : ms);
			pending = true;
			continue;
		}
		if (fs->inflight || pending) {
			/* a read takes ~15 µs: spin for it, the CPU is ours */
			sched_yield();
			continue;
		}
		if (now - last_act < spin_ns) {
			sched_yield();
			continue;
		}
		/* idle: block on the uffd; 10 ms cap for stop and swaps */
		poll(&pfd, 1, 10);
	}
	return NULL;
}
