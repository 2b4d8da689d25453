package cli

import (
	"context"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// completionTimeout bounds the API request of one shell completion, so that
// a slow or unreachable API server holds up the shell for 5s at most.
const completionTimeout = 5 * time.Second

type completionFunc = func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective)

// nameLister lists the names of one kind of object, in namespace ns when
// the kind is namespaced.
type nameLister func(ctx context.Context, c client.Client, ns string) ([]string, error)

// completeNames lists names with list and returns those that start with
// toComplete. It completes only the first positional argument.
func completeNames(root *rootOptions, list nameLister) completionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return completeFlagNames(root, list)(cmd, args, toComplete)
	}
}

// completeFlagNames is completeNames for a flag's value.
func completeFlagNames(root *rootOptions, list nameLister) completionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		c, err := root.getClients()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ns, _, err := root.namespace()
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		ctx, cancel := context.WithTimeout(commandContext(cmd), completionTimeout)
		defer cancel()

		names, err := list(ctx, c.client, ns)
		if err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return filterPrefix(names, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func commandContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}

// filterPrefix returns the sorted names that start with prefix.
func filterPrefix(names []string, prefix string) []string {
	var matches []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			matches = append(matches, n)
		}
	}
	sort.Strings(matches)
	return matches
}

func listPodNames(ctx context.Context, c client.Client, ns string) ([]string, error) {
	pods := &corev1.PodList{}
	if err := c.List(ctx, pods, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("status.phase", string(corev1.PodRunning))},
	); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(pods.Items))
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	return names, nil
}

func listNodeNames(ctx context.Context, c client.Client, _ string) ([]string, error) {
	nodes := &corev1.NodeList{}
	if err := c.List(ctx, nodes); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(nodes.Items))
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	return names, nil
}

func listMigrationNames(ctx context.Context, c client.Client, ns string) ([]string, error) {
	migrations := &lpmv1.PodMigrationList{}
	if err := c.List(ctx, migrations, client.InNamespace(ns)); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(migrations.Items))
	for _, m := range migrations.Items {
		names = append(names, m.Name)
	}
	return names, nil
}

func listPullSecretNames(ctx context.Context, c client.Client, ns string) ([]string, error) {
	secrets := &corev1.SecretList{}
	dockerConfig := fields.OneTermEqualSelector("type", string(corev1.SecretTypeDockerConfigJson))
	if err := c.List(ctx, secrets, client.InNamespace(ns),
		client.MatchingFieldsSelector{Selector: dockerConfig}); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(secrets.Items))
	for _, s := range secrets.Items {
		names = append(names, s.Name)
	}
	return names, nil
}

// listCheckTargets lists the running pods of the namespace and every node as
// node/NAME, the two kinds of argument that "check" takes.
func listCheckTargets(ctx context.Context, c client.Client, ns string) ([]string, error) {
	pods, err := listPodNames(ctx, c, ns)
	if err != nil {
		return nil, err
	}
	nodes, err := listNodeNames(ctx, c, ns)
	if err != nil {
		return nil, err
	}
	for _, n := range nodes {
		pods = append(pods, "node/"+n)
	}
	return pods, nil
}

func completePodNames(root *rootOptions) completionFunc { return completeNames(root, listPodNames) }

func completeMigrationNames(root *rootOptions) completionFunc {
	return completeNames(root, listMigrationNames)
}

func completeCheckTargets(root *rootOptions) completionFunc {
	return completeNames(root, listCheckTargets)
}

func completeNodeNames(root *rootOptions) completionFunc {
	return completeFlagNames(root, listNodeNames)
}

func completeSecretNames(root *rootOptions) completionFunc {
	return completeFlagNames(root, listPullSecretNames)
}

func completeOutputFormats(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return []string{outputJSON, outputYAML}, cobra.ShellCompDirectiveNoFileComp
}

// registerConfigFlagCompletion completes --namespace from the cluster and
// --context, --cluster and --user from the kubeconfig.
func registerConfigFlagCompletion(cmd *cobra.Command, root *rootOptions) {
	_ = cmd.RegisterFlagCompletionFunc("namespace", completeFlagNames(root,
		func(ctx context.Context, c client.Client, _ string) ([]string, error) {
			namespaces := &corev1.NamespaceList{}
			if err := c.List(ctx, namespaces); err != nil {
				return nil, err
			}
			names := make([]string, 0, len(namespaces.Items))
			for _, n := range namespaces.Items {
				names = append(names, n.Name)
			}
			return names, nil
		}))

	kubeconfigNames := func(names func(contexts, clusters, users []string) []string) completionFunc {
		return func(_ *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
			raw, err := root.configFlags.ToRawKubeConfigLoader().RawConfig()
			if err != nil {
				return nil, cobra.ShellCompDirectiveError
			}
			var contexts, clusters, users []string
			for name := range raw.Contexts {
				contexts = append(contexts, name)
			}
			for name := range raw.Clusters {
				clusters = append(clusters, name)
			}
			for name := range raw.AuthInfos {
				users = append(users, name)
			}
			return filterPrefix(names(contexts, clusters, users), toComplete), cobra.ShellCompDirectiveNoFileComp
		}
	}
	_ = cmd.RegisterFlagCompletionFunc("context", kubeconfigNames(func(c, _, _ []string) []string { return c }))
	_ = cmd.RegisterFlagCompletionFunc("cluster", kubeconfigNames(func(_, c, _ []string) []string { return c }))
	_ = cmd.RegisterFlagCompletionFunc("user", kubeconfigNames(func(_, _, u []string) []string { return u }))
}
