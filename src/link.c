/*-------------------------------------------------------------------------
 *
 * link.c
 *		A step of the pipeline: what the kernel's TCP state says of each
 *		silent session's client (alive, not reading, unreachable, closed).
 *
 * Linux keeps, per socket, when the peer last acknowledged, what is in
 * flight unacknowledged, retransmissions and backoff, unanswered probes
 * and the peer's advertised window (struct tcp_info, what "ss -ti" shows).
 * Any user may read it through sock_diag netlink, so the worker and the
 * report read it for their own server's sockets: one dump per address
 * family in use, narrowed in the kernel by a bytecode filter to sockets
 * whose local port is this server's, matched here to the sessions by the
 * client's address and port (the backend-status entry has both).  No
 * ptrace, no /proc walk; nothing is read when no silent session is on TCP.
 * Each request waits at most one second for the kernel's answer.
 *
 * A Unix-socket client is "local": the kernel keeps no such evidence.
 * When nothing can be read (another platform, an error), every TCP client
 * is "unknown", and nothing else changes.
 *
 * Copyright (c) 2026, idle_guard developers
 *
 * IDENTIFICATION
 *	  src/link.c
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <unistd.h>

#ifdef __linux__
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>
#endif

#include "postmaster/postmaster.h"

#include "snapshot.h"

#ifdef __linux__

/* The TCP state of a listening socket (TCP_LISTEN of <netinet/tcp.h>) */
#define IG_TCP_LISTEN	10

/* Size of the buffer a netlink answer is read into */
#define IG_NL_BUFSIZE	32768

static void ig_dump_family(IgSweep *sweep, int family);
static void ig_match_socket(IgSweep *sweep, const struct inet_diag_msg *msg,
							int len);
static bool ig_same_peer(const SockAddr *addr,
						 const struct inet_diag_msg *msg);

#endif

/*
 * idle_guard_client_links
 *		Set each session's link: local for a Unix socket, none for a
 *		prepared transaction, and for a TCP client what its socket shows
 *		(unknown if it cannot be read).
 */
void
idle_guard_client_links(IgSweep *sweep)
{
	bool		v4 = false;
	bool		v6 = false;
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		int			family = s->clientaddr.addr.ss_family;

		memset(&s->tcp, 0, sizeof(IgTcpFacts));
		if (s->reason == IG_REASON_PREPARED)
			s->facts.link = IG_LINK_NONE;
		else if (family == AF_INET || family == AF_INET6)
		{
			s->facts.link = IG_LINK_UNKNOWN;
			v4 |= (family == AF_INET);
			v6 |= (family == AF_INET6);
		}
		else
			s->facts.link = IG_LINK_LOCAL;
	}

#ifdef __linux__
	if (v4)
		ig_dump_family(sweep, AF_INET);
	if (v6)
		ig_dump_family(sweep, AF_INET6);
#endif

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];

		if (s->facts.link == IG_LINK_UNKNOWN)
			s->facts.link = idle_guard_classify_link(&s->tcp);
	}
}

#ifdef __linux__

/*
 * Ask the kernel for every TCP socket of one address family whose local
 * port is the server's, with its tcp_info, and match each to a session.
 * Any failure leaves the sessions' evidence empty ("unknown").
 */
static void
ig_dump_family(IgSweep *sweep, int family)
{
	struct
	{
		struct nlmsghdr nlh;
		struct inet_diag_req_v2 req;
		struct rtattr bytecode;
		struct inet_diag_bc_op op[4];
	}			request;
	struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
	struct timeval timeout = {.tv_sec = 1};
	char	   *buf;
	int			fd;
	bool		done = false;

	memset(&request, 0, sizeof(request));
	request.nlh.nlmsg_len = sizeof(request);
	request.nlh.nlmsg_type = SOCK_DIAG_BY_FAMILY;
	request.nlh.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
	request.req.sdiag_family = family;
	request.req.sdiag_protocol = IPPROTO_TCP;
	request.req.idiag_states = ~(1U << IG_TCP_LISTEN);
	request.req.idiag_ext = 1 << (INET_DIAG_INFO - 1);

	/*
	 * local port >= PostPortNumber, then local port <= PostPortNumber: each
	 * comparison is followed by an op whose "no" holds the port; "yes" goes
	 * to the next comparison (or the end: accept), "no" past the end
	 * (reject).
	 */
	request.bytecode.rta_type = INET_DIAG_REQ_BYTECODE;
	request.bytecode.rta_len = RTA_LENGTH(sizeof(request.op));
	request.op[0].code = INET_DIAG_BC_S_GE;
	request.op[0].yes = 2 * sizeof(struct inet_diag_bc_op);
	request.op[0].no = 5 * sizeof(struct inet_diag_bc_op);
	request.op[1].no = (uint16) PostPortNumber;
	request.op[2].code = INET_DIAG_BC_S_LE;
	request.op[2].yes = 2 * sizeof(struct inet_diag_bc_op);
	request.op[2].no = 3 * sizeof(struct inet_diag_bc_op);
	request.op[3].no = (uint16) PostPortNumber;

	fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
	if (fd < 0)
		return;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)) != 0 ||
		sendto(fd, &request, sizeof(request), 0,
			   (struct sockaddr *) &kernel, sizeof(kernel)) != sizeof(request))
	{
		close(fd);
		return;
	}

	buf = palloc(IG_NL_BUFSIZE);
	while (!done)
	{
		ssize_t		len = recv(fd, buf, IG_NL_BUFSIZE, 0);
		struct nlmsghdr *nlh;

		if (len <= 0)
			break;				/* error or timeout: what we have is all */
		for (nlh = (struct nlmsghdr *) buf; NLMSG_OK(nlh, len);
			 nlh = NLMSG_NEXT(nlh, len))
		{
			if (nlh->nlmsg_type == NLMSG_DONE ||
				nlh->nlmsg_type == NLMSG_ERROR)
			{
				done = true;
				break;
			}
			if (nlh->nlmsg_type != SOCK_DIAG_BY_FAMILY ||
				nlh->nlmsg_len < NLMSG_LENGTH(sizeof(struct inet_diag_msg)))
				continue;
			ig_match_socket(sweep, NLMSG_DATA(nlh),
							nlh->nlmsg_len -
							NLMSG_LENGTH(sizeof(struct inet_diag_msg)));
		}
	}
	pfree(buf);
	close(fd);
}

/*
 * One socket of the dump: if it is a session's, copy its evidence (len
 * bytes of attributes follow the message).
 */
static void
ig_match_socket(IgSweep *sweep, const struct inet_diag_msg *msg, int len)
{
	const struct rtattr *attr;
	int			i;

	for (i = 0; i < sweep->nsessions; i++)
	{
		IgSession  *s = &sweep->sessions[i];
		IgTcpFacts *t = &s->tcp;

		if (s->facts.link != IG_LINK_UNKNOWN || t->found ||
			!ig_same_peer(&s->clientaddr, msg))
			continue;

		t->found = true;
		t->state = msg->idiag_state;
		for (attr = (const struct rtattr *) (msg + 1); RTA_OK(attr, len);
			 attr = RTA_NEXT(attr, len))
		{
			struct tcp_info info;

			if (attr->rta_type != INET_DIAG_INFO)
				continue;

			/* a kernel may know more fields, or fewer, than these headers */
			memset(&info, 0, sizeof(info));
			memcpy(&info, RTA_DATA(attr),
				   Min(RTA_PAYLOAD(attr), sizeof(info)));
			t->retransmits = info.tcpi_retransmits;
			t->probes = info.tcpi_probes;
			t->backoff = info.tcpi_backoff;
			t->unacked = info.tcpi_unacked;
			t->total_retrans = info.tcpi_total_retrans;
			t->last_ack_recv_ms = info.tcpi_last_ack_recv;
			t->last_data_recv_ms = info.tcpi_last_data_recv;
			t->last_data_sent_ms = info.tcpi_last_data_sent;
			t->rto_us = info.tcpi_rto;
			t->snd_wnd = RTA_PAYLOAD(attr) >=
				offsetof(struct tcp_info, tcpi_snd_wnd) + sizeof(info.tcpi_snd_wnd) ?
				info.tcpi_snd_wnd : 1;	/* unknown: not a zero window */
		}
		return;
	}
}

/* Is the socket's peer (address and port) this client's? */
static bool
ig_same_peer(const SockAddr *addr, const struct inet_diag_msg *msg)
{
	if (addr->addr.ss_family != msg->idiag_family)
		return false;
	if (msg->idiag_family == AF_INET)
	{
		const struct sockaddr_in *in = (const struct sockaddr_in *) &addr->addr;

		return in->sin_port == msg->id.idiag_dport &&
			memcmp(&in->sin_addr, msg->id.idiag_dst, 4) == 0;
	}
	else
	{
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *) &addr->addr;

		return in6->sin6_port == msg->id.idiag_dport &&
			memcmp(&in6->sin6_addr, msg->id.idiag_dst, 16) == 0;
	}
}

#endif							/* __linux__ */
