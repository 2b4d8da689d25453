package cli

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/cli-runtime/pkg/printers"
	"sigs.k8s.io/controller-runtime/pkg/client"

	lpmv1 "github.com/lpm-dev/lpm/api/v1"
)

// statusOptions are the settings of "kubectl migrate status".
type statusOptions struct {
	root   *rootOptions
	name   string
	output string
}

func newStatusCommand(root *rootOptions) *cobra.Command {
	o := &statusOptions{root: root}
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show the details of a PodMigration",
		Long: `Show the details of a PodMigration: its phases with the time each began and
lasted, each container's checkpoint size and dump statistics, the conditions
of the controller and of both agents, and the PodMigration's events.`,
		Example: `  # Show the details of migration web-x7k2p
  kubectl migrate status web-x7k2p

  # Print the PodMigration as YAML
  kubectl migrate status web-x7k2p -o yaml`,
		ValidArgsFunction: completeMigrationNames(root),
		RunE: func(cmd *cobra.Command, args []string) error {
			name, err := migrationNameFromArgs(args, cmd.CommandPath())
			if err != nil {
				return err
			}
			if err := validateOutput(o.output); err != nil {
				return err
			}
			o.name = name
			return o.run(cmd.Context())
		},
	}
	cmd.Flags().StringVarP(&o.output, "output", "o", "", "Print the PodMigration as json or yaml.")
	_ = cmd.RegisterFlagCompletionFunc("output", completeOutputFormats)
	return cmd
}

// migrationNameFromArgs returns the single PodMigration name in args, or a
// usage error.
func migrationNameFromArgs(args []string, commandPath string) (string, error) {
	switch len(args) {
	case 0:
		return "", usageErrorf("missing PodMigration name: run '%s NAME'. "+
			"'kubectl migrate list' lists the names", commandPath)
	case 1:
		return args[0], validateObjectName("PodMigration name", args[0])
	default:
		return "", usageErrorf("expected one PodMigration name, got %d arguments: %s",
			len(args), strings.Join(args, " "))
	}
}

// getMigration gets a PodMigration and turns NotFound into a message that
// names the namespace.
func getMigration(ctx context.Context, c client.Client, ns, name string) (*lpmv1.PodMigration, error) {
	pm := &lpmv1.PodMigration{}
	if err := c.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, pm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("PodMigration %q not found in namespace %q", name, ns)
		}
		return nil, fmt.Errorf("failed to get PodMigration %s/%s: %w", ns, name, err)
	}
	return pm, nil
}

func (o *statusOptions) run(ctx context.Context) error {
	c, err := o.root.getClients()
	if err != nil {
		return err
	}
	ns, _, err := o.root.namespace()
	if err != nil {
		return err
	}
	pm, err := getMigration(ctx, c.client, ns, o.name)
	if err != nil {
		return err
	}
	if o.output != outputNone {
		return printObject(o.root.streams.Out, o.output, pm)
	}

	events, eventsErr := listEvents(ctx, c.client, pm)
	return writeStatus(o.root.streams.Out, pm, events, eventsErr, o.root.deps.Clock.Now())
}

// listEvents lists the events.k8s.io Events about pm, oldest first.
func listEvents(ctx context.Context, c client.Client, pm *lpmv1.PodMigration) ([]eventsv1.Event, error) {
	list := &eventsv1.EventList{}
	err := c.List(ctx, list, client.InNamespace(pm.Namespace), client.MatchingFieldsSelector{
		Selector: fields.OneTermEqualSelector("regarding.uid", string(pm.UID)),
	})
	if err != nil {
		return nil, fmt.Errorf("failed to list the events of PodMigration %s: %w", pm.Name, err)
	}
	sort.SliceStable(list.Items, func(i, j int) bool {
		return eventTime(&list.Items[i]).Before(eventTime(&list.Items[j]))
	})
	return list.Items, nil
}

// eventTime returns when an event last happened.
func eventTime(e *eventsv1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.DeprecatedLastTimestamp.IsZero():
		return e.DeprecatedLastTimestamp.Time
	default:
		return e.CreationTimestamp.Time
	}
}

// writeStatus writes the report of "kubectl migrate status".
func writeStatus(out io.Writer, pm *lpmv1.PodMigration, events []eventsv1.Event, eventsErr error,
	now time.Time) error {
	// Each section gets a tab writer of its own, because kubectl's tab
	// writer keeps column widths from one block of lines to the next.
	sections := []func(io.Writer){
		func(w io.Writer) { writeStatusSummary(w, pm) },
		func(w io.Writer) { writePhases(w, pm, now) },
		func(w io.Writer) { writeContainers(w, pm) },
		func(w io.Writer) { writeConditions(w, pm, now) },
		func(w io.Writer) { writeEvents(w, events, eventsErr, now) },
	}
	for _, section := range sections {
		w := printers.GetNewTabWriter(out)
		section(w)
		if err := w.Flush(); err != nil {
			return fmt.Errorf("failed to write the status: %w", err)
		}
	}
	return nil
}

func writeStatusSummary(w io.Writer, pm *lpmv1.PodMigration) {
	st := &pm.Status
	field := func(name, value string) { _, _ = fmt.Fprintf(w, "%s:\t%s\n", name, value) }

	field("Name", pm.Name)
	field("Namespace", pm.Namespace)
	field("Pod", pm.Spec.PodName)
	field("Source node", orNone(st.SourceNode))
	field("Target node", orNone(targetNodeOf(pm)))
	field("Restored pod", orNone(st.RestoredPod))
	sourcePolicy := pm.Spec.SourcePolicy
	if sourcePolicy == "" {
		sourcePolicy = lpmv1.SourcePolicyDelete
	}
	field("Source policy", string(sourcePolicy))
	field("Transfer", describeTransfer(pm.Spec.Transfer))
	field("Dry run", fmt.Sprint(pm.Spec.DryRun))
	field("Phase", listPhase(pm))
	if c := summaryCondition(pm); c != nil {
		result := c.Reason
		if c.Message != "" {
			result += ": " + oneLine(c.Message)
		}
		field("Result", result)
	}
	if pm.Status.Phase == lpmv1.PhaseFailed {
		reason, _ := failureReason(pm)
		field("What to do", adviceFor(reason, pm))
	}
	field("Created", formatTimestamp(&pm.CreationTimestamp))
	field("Started", formatTimestamp(st.StartTime))
	field("Completed", formatTimestamp(st.CompletionTime))
	field("Cut time", formatMicroTimestamp(st.CutTime))
	field("Ready time", formatMicroTimestamp(st.RestoredReadyTime))
	if st.Downtime != nil {
		field("Downtime", formatDuration(st.Downtime.Duration))
	} else {
		field("Downtime", "<none>")
	}
	if done, total := transferBytes(pm); done > 0 || total > 0 {
		transferred := formatBytes(done)
		if total > 0 {
			transferred += " of " + formatBytes(total)
		}
		field("Transferred", transferred)
	}
	if src := st.Source; src != nil {
		if src.Endpoint != "" {
			field("Image endpoint", src.Endpoint)
		}
		if src.LogPath != "" {
			field("CRIU logs", orNone(st.SourceNode)+":"+src.LogPath)
		}
		if src.Frozen {
			field("Source frozen", "true")
		}
	}
}

func describeTransfer(t *lpmv1.Transfer) string {
	if t == nil || t.Mode == "" || t.Mode == lpmv1.TransferModeDirect {
		return string(lpmv1.TransferModeDirect)
	}
	s := string(t.Mode)
	if t.Registry != nil {
		s += " to " + t.Registry.Repository
		if t.Registry.PullSecretName != "" {
			s += " (pull secret " + t.Registry.PullSecretName + ")"
		}
	}
	return s
}

// writePhases writes each phase with the time it began and how long it
// lasted, from status.phaseTransitions.
func writePhases(w io.Writer, pm *lpmv1.PodMigration, now time.Time) {
	transitions := pm.Status.PhaseTransitions
	if len(transitions) == 0 {
		_, _ = fmt.Fprintln(w, "Phases:  <none>")
		return
	}
	_, _ = fmt.Fprintln(w, "Phases:")
	_, _ = fmt.Fprintln(w, "  PHASE\tENTERED\tDURATION")
	for i, tr := range transitions {
		duration := ""
		switch {
		case i+1 < len(transitions):
			duration = formatDuration(transitions[i+1].Time.Sub(tr.Time.Time))
		case !isTerminalPhase(tr.Phase):
			duration = formatDuration(now.Sub(tr.Time.Time)) + " so far"
		}
		_, _ = fmt.Fprintf(w, "  %s\t%s\t%s\n", tr.Phase, formatMicroTimestamp(&tr.Time), duration)
	}
}

// containerRow merges what the controller and both agents report about one
// container.
type containerRow struct {
	name         string
	archiveBytes int64
	imageBytes   int64
	freezingTime *metav1.Duration
	frozenTime   *metav1.Duration
	pagesWritten int64
	restored     bool
	image        string
}

func containerRows(pm *lpmv1.PodMigration) []containerRow {
	var rows []containerRow
	index := map[string]int{}
	row := func(name string) *containerRow {
		if i, ok := index[name]; ok {
			return &rows[i]
		}
		index[name] = len(rows)
		rows = append(rows, containerRow{name: name})
		return &rows[len(rows)-1]
	}

	for _, c := range pm.Status.Containers {
		r := row(c.Name)
		r.archiveBytes, r.freezingTime, r.frozenTime = c.ArchiveBytes, c.FreezingTime, c.FrozenTime
		r.pagesWritten, r.restored = c.PagesWritten, c.Restored
	}
	if src := pm.Status.Source; src != nil {
		for _, c := range src.Containers {
			r := row(c.Name)
			r.imageBytes, r.image = c.ImageBytes, c.Image
			if r.archiveBytes == 0 {
				r.archiveBytes, r.freezingTime, r.frozenTime = c.ArchiveBytes, c.FreezingTime, c.FrozenTime
				r.pagesWritten = c.PagesWritten
			}
		}
	}
	if tgt := pm.Status.Target; tgt != nil {
		for _, c := range tgt.Containers {
			r := row(c.Name)
			r.restored = r.restored || c.Restored
		}
	}
	for name, image := range pm.Status.CheckpointImages {
		if r := row(name); r.image == "" {
			r.image = image
		}
	}
	return rows
}

func formatOptionalDuration(d *metav1.Duration) string {
	if d == nil {
		return "<none>"
	}
	return formatDuration(d.Duration)
}

func formatOptionalBytes(n int64) string {
	if n == 0 {
		return "<none>"
	}
	return formatBytes(n)
}

func writeContainers(w io.Writer, pm *lpmv1.PodMigration) {
	rows := containerRows(pm)
	if len(rows) == 0 {
		_, _ = fmt.Fprintln(w, "Containers:  <none>")
		return
	}
	_, _ = fmt.Fprintln(w, "Containers:")
	_, _ = fmt.Fprintln(w, "  NAME\tARCHIVE\tIMAGE SIZE\tFREEZING\tFROZEN\tPAGES WRITTEN\tRESTORED\tCHECKPOINT IMAGE")
	for _, r := range rows {
		_, _ = fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\t%d\t%t\t%s\n", r.name,
			formatOptionalBytes(r.archiveBytes), formatOptionalBytes(r.imageBytes),
			formatOptionalDuration(r.freezingTime), formatOptionalDuration(r.frozenTime),
			r.pagesWritten, r.restored, orNone(r.image))
	}
}

// writeConditions writes the controller's conditions and then each agent's,
// prefixed with source/ or target/.
func writeConditions(w io.Writer, pm *lpmv1.PodMigration, now time.Time) {
	type prefixed struct {
		prefix string
		c      metav1.Condition
	}
	var all []prefixed
	for _, c := range pm.Status.Conditions {
		all = append(all, prefixed{"", c})
	}
	if src := pm.Status.Source; src != nil {
		for _, c := range src.Conditions {
			all = append(all, prefixed{"source/", c})
		}
	}
	if tgt := pm.Status.Target; tgt != nil {
		for _, c := range tgt.Conditions {
			all = append(all, prefixed{"target/", c})
		}
	}

	if len(all) == 0 {
		_, _ = fmt.Fprintln(w, "Conditions:  <none>")
		return
	}
	_, _ = fmt.Fprintln(w, "Conditions:")
	_, _ = fmt.Fprintln(w, "  TYPE\tSTATUS\tREASON\tAGE\tMESSAGE")
	for _, p := range all {
		_, _ = fmt.Fprintf(w, "  %s%s\t%s\t%s\t%s\t%s\n", p.prefix, p.c.Type, p.c.Status, p.c.Reason,
			formatAge(p.c.LastTransitionTime, now), oneLine(p.c.Message))
	}
}

func writeEvents(w io.Writer, events []eventsv1.Event, eventsErr error, now time.Time) {
	switch {
	case eventsErr != nil:
		_, _ = fmt.Fprintf(w, "Events:  <unavailable: %v>\n", eventsErr)
		return
	case len(events) == 0:
		_, _ = fmt.Fprintln(w, "Events:  <none>")
		return
	}
	_, _ = fmt.Fprintln(w, "Events:")
	_, _ = fmt.Fprintln(w, "  TYPE\tREASON\tAGE\tFROM\tMESSAGE")
	for i := range events {
		e := &events[i]
		age := formatAge(metav1.NewTime(eventTime(e)), now)
		if n := eventCount(e); n > 1 {
			age = fmt.Sprintf("%s (x%d)", age, n)
		}
		_, _ = fmt.Fprintf(w, "  %s\t%s\t%s\t%s\t%s\n", e.Type, e.Reason, age,
			orNone(e.ReportingController), oneLine(e.Note))
	}
}

func eventCount(e *eventsv1.Event) int32 {
	if e.Series != nil {
		return e.Series.Count
	}
	return e.DeprecatedCount
}

// oneLine keeps a message on one table row and escapes terminal control
// characters that an object's author could put in it.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	return printers.EscapeTerminal(s)
}
