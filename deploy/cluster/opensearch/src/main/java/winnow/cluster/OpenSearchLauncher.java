package winnow.cluster;

import java.io.IOException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

import org.codelibs.opensearch.runner.OpenSearchRunner;

/**
 * Starts an OpenSearch cluster in one JVM on loopback, with ports chosen by the caller.
 *
 * The runner's own main() only takes a base HTTP port and probes upward from it, which races with
 * other clusters started at the same moment on the same machine; here every node gets exactly the
 * HTTP and transport ports it is given (picked free by deploy/cluster/opensearch.sh), and nodes find
 * each other only through those ports, so two clusters on one machine never join each other.
 *
 * With --node N this JVM runs only the N-th node (1-based) of the cluster the port lists describe,
 * and finds the others through the same seed list: one process per node, so one node can be
 * stopped (or killed) while the others keep serving, as in a real cluster.
 *
 * Arguments: --base DIR --http P1,P2,.. --transport T1,T2,.. [--node N] [--plugins CLASS,..] [--cluster NAME]
 */
public final class OpenSearchLauncher {
    private OpenSearchLauncher() {
    }

    public static void main(final String[] argv) throws Exception {
        final Map<String, String> args = parse(argv);
        final String base = required(args, "base");
        final String[] http = required(args, "http").split(",");
        final String[] transport = required(args, "transport").split(",");
        if (http.length != transport.length) {
            throw new IllegalArgumentException("--http and --transport need one port per node");
        }
        final int nodes = http.length;
        final int only = Integer.parseInt(args.getOrDefault("node", "0"));
        if (only < 0 || only > nodes) {
            throw new IllegalArgumentException("--node must be 1.." + nodes);
        }
        final String cluster = args.getOrDefault("cluster", "winnow-test");
        final List<String> seeds = new ArrayList<>();
        final List<String> managers = new ArrayList<>();
        for (int i = 0; i < nodes; i++) {
            seeds.add("127.0.0.1:" + transport[i]);
            managers.add("Node " + (i + 1));
        }

        final OpenSearchRunner runner = new OpenSearchRunner();
        runner.onBuild((id, settings) -> {
            // the runner numbers the nodes of this JVM from 1; with --node that is the one given
            final int node = only > 0 ? only : id;
            settings.put("node.name", "Node " + node);
            settings.put("network.host", "127.0.0.1");
            settings.put("http.port", http[node - 1]);
            settings.put("transport.port", transport[node - 1]);
            if (nodes == 1) {
                settings.put("discovery.type", "single-node");
            } else {
                settings.putList("discovery.seed_hosts", seeds);
                settings.putList("cluster.initial_cluster_manager_nodes", managers);
            }
            // Tests fill the disk of a shared machine; the default watermarks would turn indexes read-only.
            settings.put("cluster.routing.allocation.disk.threshold_enabled", "false");
            settings.put("action.auto_create_index", "false");
        });

        final List<String> runnerArgs = new ArrayList<>(List.of(
                "-basePath", base,
                "-numOfNode", String.valueOf(only > 0 ? 1 : nodes),
                "-clusterName", cluster,
                "-printOnFailure"));
        final String plugins = args.get("plugins");
        if (plugins != null && !plugins.isEmpty()) {
            runnerArgs.add("-pluginTypes");
            runnerArgs.add(plugins);
        }

        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                runner.close();
            } catch (final IOException e) {
                System.err.println("closing nodes: " + e.getMessage());
            }
        }));
        try {
            runner.build(runnerArgs.toArray(new String[0]));
        } catch (final RuntimeException e) {
            e.printStackTrace();
            System.exit(1);
        }
        System.out.println("WINNOW_LAUNCHER_STARTED nodes=" + (only > 0 ? "node " + only + " of " + nodes : nodes));
        while (!runner.isClosed()) {
            Thread.sleep(2000);
        }
    }

    private static Map<String, String> parse(final String[] argv) {
        final Map<String, String> out = new LinkedHashMap<>();
        for (int i = 0; i < argv.length; i++) {
            if (!argv[i].startsWith("--") || i + 1 >= argv.length) {
                throw new IllegalArgumentException("expected --name value pairs, got: " + argv[i]);
            }
            out.put(argv[i].substring(2), argv[++i]);
        }
        return out;
    }

    private static String required(final Map<String, String> args, final String name) {
        final String value = args.get(name);
        if (value == null) {
            throw new IllegalArgumentException("missing --" + name);
        }
        return value;
    }
}
