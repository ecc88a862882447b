/* The pod network of xen pods, the pure part (cri/xen_net.c): what the agent is told (NET_CONFIG)
 * from a CNI result: the pod interface's addresses only, routes with their gateway defaulting to
 * the address's, a default route when the result has none, nothing the protocol would refuse. */
#include <check.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "xen_net.h"

/* A result as cni_json.c parses it: eth0 in the pod's netns, a host-side veth. */
static void fake_result(struct vgpu_xen_pod_net *net, const char *routes_json)
{
	memset(net, 0, sizeof(*net));
	snprintf(net->mac, sizeof(net->mac), "0a:58:0a:58:07:05");
	net->mtu = 1500;
	net->netns = vgpu_strdup("/run/vgpu-cri/netns/x");
	struct vgpu_cni_result *r = &net->result;
	r->network = vgpu_strdup("xenpods");
	r->n_interfaces = 2;
	r->interfaces = vgpu_calloc(2, sizeof(*r->interfaces));
	r->interfaces[0] = (struct vgpu_cni_interface){ vgpu_strdup("veth1"), vgpu_strdup("aa:aa:aa:aa:aa:aa"), vgpu_strdup("") };
	r->interfaces[1] = (struct vgpu_cni_interface){ vgpu_strdup("eth0"), vgpu_strdup(net->mac), vgpu_strdup(net->netns) };
	r->n_ips = 3;
	r->ips = vgpu_calloc(3, sizeof(*r->ips));
	r->ips[0] = (struct vgpu_cni_ip){ vgpu_strdup("10.88.7.5/24"), vgpu_strdup("10.88.7.5"), vgpu_strdup("10.88.7.1"), 1, false };
	r->ips[1] = (struct vgpu_cni_ip){ vgpu_strdup("192.168.0.9/24"), vgpu_strdup("192.168.0.9"), vgpu_strdup(""), 0, false };
	r->ips[2] = (struct vgpu_cni_ip){ vgpu_strdup("fd00::5/64"), vgpu_strdup("fd00::5"), vgpu_strdup("fd00::1"), -1, true };
	r->json = routes_json ? vgpu_strdup(routes_json) : NULL;
	vgpu_xen_net_parse_routes(net, r->json);
}

START_TEST(addresses_of_the_pod_interface)
{
	struct vgpu_xen_pod_net net;
	struct agent_net_config nc;
	fake_result(&net, "{\"cniVersion\":\"1.0.0\"}");
	ck_assert_int_eq(vgpu_xen_net_agent_config(&net, "nameserver 10.96.0.10\n", &nc, NULL), 0);
	ck_assert_str_eq(nc.mac, "0a:58:0a:58:07:05");
	ck_assert_uint_eq(nc.mtu, 1500);
	/* the host-side veth's address is not the guest's */
	ck_assert_uint_eq(nc.n_addrs, 2);
	ck_assert_str_eq(nc.addrs[0], "10.88.7.5/24");
	ck_assert_str_eq(nc.addrs[1], "fd00::5/64");
	/* no routes in the result: a default route through the IPv4 gateway */
	ck_assert_uint_eq(nc.n_routes, 1);
	ck_assert_str_eq(nc.routes[0].dst, "0.0.0.0/0");
	ck_assert_str_eq(nc.routes[0].gw, "10.88.7.1");
	ck_assert_str_eq(nc.resolv_conf, "nameserver 10.96.0.10\n");
	/* and the protocol takes it */
	struct agent_buf b = { 0 };
	ck_assert_int_eq(agent_net_config_encode(&b, &nc), 0);
	agent_buf_free(&b);
	vgpu_xen_net_free(&net);
}
END_TEST

START_TEST(routes_from_the_result)
{
	struct vgpu_xen_pod_net net;
	struct agent_net_config nc;
	fake_result(&net, "{\"routes\":[{\"dst\":\"0.0.0.0/0\"},{\"dst\":\"10.99.0.0/16\",\"gw\":\"10.88.7.254\"},"
			  "{\"dst\":\"::/0\"},{\"dst\":\"not-a-cidr\"},{\"dst\":\"10.1.0.0/16\",\"gw\":\"-f\"},{\"gw\":\"1.2.3.4\"},7]}");
	ck_assert_uint_eq(net.n_routes, 3); /* the malformed ones are dropped */
	ck_assert_int_eq(vgpu_xen_net_agent_config(&net, NULL, &nc, NULL), 0);
	ck_assert_uint_eq(nc.n_routes, 3);
	ck_assert_str_eq(nc.routes[0].dst, "0.0.0.0/0");
	ck_assert_str_eq(nc.routes[0].gw, "10.88.7.1"); /* the address's gateway */
	ck_assert_str_eq(nc.routes[1].gw, "10.88.7.254");
	ck_assert_str_eq(nc.routes[2].dst, "::/0");
	ck_assert_str_eq(nc.routes[2].gw, "fd00::1");
	ck_assert_str_eq(nc.resolv_conf, "");
	vgpu_xen_net_free(&net);
}
END_TEST

START_TEST(no_usable_address_is_an_error)
{
	struct vgpu_xen_pod_net net;
	struct agent_net_config nc;
	struct vgpu_err err = { 0 };
	fake_result(&net, NULL);
	/* only the host-side address is left */
	net.result.n_ips = 2;
	free(net.result.ips[0].address);
	net.result.ips[0].address = vgpu_strdup("10.88.7.5"); /* no prefix: not a cidr */
	ck_assert_int_eq(vgpu_xen_net_agent_config(&net, NULL, &nc, &err), -EINVAL);
	ck_assert_ptr_nonnull(strstr(err.msg, "xenpods"));
	net.result.n_ips = 3;
	vgpu_xen_net_free(&net);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("xen_net");
	TCase *tc = tcase_create("agent_config");
	tcase_add_test(tc, addresses_of_the_pod_interface);
	tcase_add_test(tc, routes_from_the_result);
	tcase_add_test(tc, no_usable_address_is_an_error);
	suite_add_tcase(s, tc);
	SRunner *runner = srunner_create(s);
	srunner_run_all(runner, CK_NORMAL);
	int failed = srunner_ntests_failed(runner);
	srunner_free(runner);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
