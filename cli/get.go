package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/skiffhq/skiff/agent"
	"github.com/skiffhq/skiff/manifest"
)

type getOptions struct {
	namespace     string
	allNamespaces bool
	output        string
	selector      string
}

func newGetCmd() *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get KIND[,KIND...] [NAME]",
		Short: "List objects (pods, deployments, replicasets, services, configmaps, secrets, events, nodes, ...)",
		Example: `  skiff get pods -A
  skiff get deployments -n shop -o wide
  skiff get pod web-7c9f-abcde -o yaml
  skiff get services,endpoints`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := newClient(cmd)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 2 {
				name = args[1]
			}
			return o.run(cmd.Context(), c, cmd.OutOrStdout(), strings.Split(args[0], ","), name)
		},
	}
	addNamespaceFlags(cmd, &o.namespace, &o.allNamespaces)
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "output format: wide, json, yaml or name")
	cmd.Flags().StringVarP(&o.selector, "selector", "l", "", "label selector, e.g. app=web,tier!=db")
	return cmd
}

func addNamespaceFlags(cmd *cobra.Command, ns *string, all *bool) {
	cmd.Flags().StringVarP(ns, "namespace", "n", "default", "namespace")
	if all != nil {
		cmd.Flags().BoolVarP(all, "all-namespaces", "A", false, "list across all namespaces")
	}
}

// fetch returns the objects of one resource.
func fetch(ctx context.Context, c *client, res manifest.Resource, ns, name, selector string) ([]manifest.Object, []json.RawMessage, error) {
	q := url.Values{}
	if res.Namespaced && ns != "" {
		q.Set("namespace", ns)
	}
	if name != "" {
		q.Set("name", name)
	}
	if selector != "" {
		q.Set("selector", selector)
	}
	var list struct {
		Items []json.RawMessage `json:"items"`
	}
	if name != "" {
		var raw json.RawMessage
		if err := c.getJSON(ctx, agent.PathResources+res.Plural, q, &raw); err != nil {
			return nil, nil, err
		}
		list.Items = []json.RawMessage{raw}
	} else if err := c.getJSON(ctx, agent.PathResources+res.Plural, q, &list); err != nil {
		return nil, nil, err
	}
	objs := make([]manifest.Object, 0, len(list.Items))
	for _, raw := range list.Items {
		o, err := manifest.Decode(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", res.Kind, err)
		}
		objs = append(objs, o)
	}
	return objs, list.Items, nil
}

func (o *getOptions) run(ctx context.Context, c *client, out io.Writer, kinds []string, name string) error {
	ns := o.namespace
	if o.allNamespaces {
		ns = ""
	}
	var all []json.RawMessage
	for i, k := range kinds {
		res, ok := manifest.LookupResource(k)
		if !ok {
			return fmt.Errorf("the server doesn't have a resource type %q", k)
		}
		objs, raws, err := fetch(ctx, c, res, ns, name, o.selector)
		if err != nil {
			return err
		}
		switch o.output {
		case "json", "yaml":
			all = append(all, raws...)
			continue
		case "name":
			for _, obj := range objs {
				fmt.Fprintf(out, "%s/%s\n", strings.ToLower(res.Kind), obj.GetName())
			}
			continue
		case "", "wide":
		default:
			return fmt.Errorf("unknown output format %q (want wide, json, yaml or name)", o.output)
		}
		if len(objs) == 0 {
			if len(kinds) == 1 {
				if ns == "" || !res.Namespaced {
					fmt.Fprintf(out, "No %s found.\n", res.Plural)
				} else {
					fmt.Fprintf(out, "No %s found in %s namespace.\n", res.Plural, ns)
				}
			}
			continue
		}
		if i > 0 && len(kinds) > 1 {
			fmt.Fprintln(out)
		}
		t := tableFor(res, objs, o.output == "wide")
		t.print(out, ns == "" && res.Namespaced, len(kinds) > 1, strings.ToLower(res.Kind))
	}
	switch o.output {
	case "json", "yaml":
		var v any = json.RawMessage(nil)
		if name != "" && len(kinds) == 1 && len(all) == 1 {
			v = all[0]
		} else {
			v = map[string]any{"apiVersion": "v1", "kind": "List", "metadata": map[string]any{}, "items": nonNil(all)}
		}
		b, err := json.MarshalIndent(v, "", "    ")
		if err != nil {
			return err
		}
		if o.output == "yaml" {
			if b, err = yaml.JSONToYAML(b); err != nil {
				return err
			}
			_, err = out.Write(b)
			return err
		}
		fmt.Fprintf(out, "%s\n", b)
	}
	return nil
}

func nonNil(r []json.RawMessage) []json.RawMessage {
	if r == nil {
		return []json.RawMessage{}
	}
	return r
}

// sortByNamespaceName keeps output stable.
func sortByNamespaceName(objs []manifest.Object) {
	sort.SliceStable(objs, func(i, j int) bool {
		if objs[i].GetNamespace() != objs[j].GetNamespace() {
			return objs[i].GetNamespace() < objs[j].GetNamespace()
		}
		return objs[i].GetName() < objs[j].GetName()
	})
}
