//! The churn test's judge: the members' event lines parsed, and the
//! at-least-once analysis over every incarnation (nothing skipped, every
//! duplicate inside an uncommitted tail, commits never backwards).

use super::*;

/// One line a member wrote.
#[derive(Debug, Clone)]
pub(crate) enum Event {
    Assigned(BTreeSet<i32>),
    Handed { partition: i32, offset: i64 },
    Committed { partition: i32, next: i64 },
    PollError(String),
    CommitRefused(String),
}

pub(crate) fn parse(line: &str) -> Option<Event> {
    let (tag, rest) = line.split_once(' ').unwrap_or((line, ""));
    let pair = |rest: &str| -> Option<(i32, i64)> {
        let (p, o) = rest.trim().split_once(' ')?;
        Some((p.parse::<i32>().ok()?, o.parse::<i64>().ok()?))
    };
    match tag {
        "H" => pair(rest).map(|(partition, offset)| Event::Handed { partition, offset }),
        "C" => pair(rest).map(|(partition, next)| Event::Committed { partition, next }),
        "A" => rest
            .trim()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(|s| s.parse::<i32>().ok())
            .collect::<Option<BTreeSet<i32>>>()
            .map(Event::Assigned),
        "E" => Some(Event::PollError(rest.to_string())),
        "R" => Some(Event::CommitRefused(rest.to_string())),
        _ => None,
    }
}

/// One member process, from start to death.
pub(crate) struct Incarnation {
    pub(crate) label: String,
    /// Since the members started.
    pub(crate) started: Duration,
    /// Every parsed line, with when the parent read it.
    pub(crate) events: Vec<(Instant, Event)>,
    /// The last stdout lines that are not events (libtest's).
    pub(crate) other: VecDeque<String>,
    pub(crate) stderr: VecDeque<String>,
    /// How it ended, once it has.
    pub(crate) fate: Option<String>,
    /// Its stdout reached end of file.
    pub(crate) closed: bool,
}

#[derive(Default)]
pub(crate) struct Analysis {
    pub(crate) handed: usize,
    /// Handouts beyond the first of each (partition, offset).
    pub(crate) duplicates: usize,
    /// (partition, offset) handed out more than once.
    pub(crate) duplicated_offsets: usize,
    /// Duplicates whose previous handout was by the same incarnation.
    pub(crate) same_incarnation_duplicates: usize,
    /// Records handed out and not covered by their incarnation's later
    /// commit before it lost the partition, rewound, or died.
    pub(crate) bound: usize,
    pub(crate) unexplained_count: usize,
    /// The first unexplained duplicates, described.
    pub(crate) unexplained: Vec<String>,
    pub(crate) backwards: Vec<String>,
    pub(crate) skipped: Vec<String>,
    pub(crate) outside_assignment: usize,
    pub(crate) refused_commits: usize,
    pub(crate) poll_errors: usize,
}

/// One handout of an offset: when the parent read it, by which
/// incarnation, at which of its lines.
pub(crate) type Handout = (Instant, usize, usize);

pub(crate) fn analyse(incarnations: &[Incarnation], ends: &BTreeMap<i32, i64>) -> Analysis {
    let mut a = Analysis::default();
    // (partition, offset) -> every handout: when read, incarnation, line.
    let mut handouts: HashMap<(i32, i64), Vec<Handout>> = HashMap::new();
    // Per incarnation and partition: its successful commits (line, next
    // offset) and the lines where it did not own the partition (A lines).
    let mut commits: Vec<BTreeMap<i32, Vec<(usize, i64)>>> = Vec::new();
    let mut losses: Vec<BTreeMap<i32, Vec<usize>>> = Vec::new();

    for (i, inc) in incarnations.iter().enumerate() {
        let mut c: BTreeMap<i32, Vec<(usize, i64)>> = BTreeMap::new();
        let mut l: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
        let mut assigned: Option<&BTreeSet<i32>> = None;
        // Per partition, uncommitted handouts: offset -> how many times.
        let mut pending: BTreeMap<i32, BTreeMap<i64, usize>> = BTreeMap::new();
        for (line, (at, event)) in inc.events.iter().enumerate() {
            match event {
                Event::Assigned(set) => {
                    for p in 0..PARTITIONS {
                        if !set.contains(&p) {
                            l.entry(p).or_default().push(line);
                        }
                    }
                    // Losing a partition ends its uncommitted tail.
                    pending.retain(|p, offsets| {
                        if set.contains(p) {
                            true
                        } else {
                            a.bound += offsets.values().sum::<usize>();
                            false
                        }
                    });
                    assigned = Some(set);
                }
                Event::Handed { partition, offset } => {
                    a.handed += 1;
                    if !assigned.is_some_and(|s| s.contains(partition)) {
                        a.outside_assignment += 1;
                    }
                    handouts
                        .entry((*partition, *offset))
                        .or_default()
                        .push((*at, i, line));
                    let offsets = pending.entry(*partition).or_default();
                    // A rewind (back to the committed offset): the tail
                    // handed out since then may come again.
                    let rewound = offsets.split_off(offset);
                    a.bound += rewound.values().sum::<usize>();
                    *offsets.entry(*offset).or_default() += 1;
                }
                Event::Committed { partition, next } => {
                    let list = c.entry(*partition).or_default();
                    if let Some(&(before, previous)) = list.last()
                        && *next < previous
                        && a.backwards.len() < 20
                    {
                        a.backwards.push(format!(
                            "{} committed partition {partition} at {previous} (line {before}), \
                             then at {next} (line {line})",
                            inc.label
                        ));
                    }
                    list.push((line, *next));
                    if let Some(offsets) = pending.get_mut(partition) {
                        *offsets = offsets.split_off(next);
                    }
                }
                Event::CommitRefused(_) => a.refused_commits += 1,
                Event::PollError(_) => a.poll_errors += 1,
            }
        }
        // Death ends every tail.
        a.bound += pending.values().flat_map(BTreeMap::values).sum::<usize>();
        commits.push(c);
        losses.push(l);
    }

    // Nothing skipped.
    for (&p, &end) in ends {
        let missing: Vec<i64> = (0..end)
            .filter(|o| !handouts.contains_key(&(p, *o)))
            .collect();
        if !missing.is_empty() {
            a.skipped.push(format!(
                "  partition {p}: {} of {end}: {}",
                missing.len(),
                ranges(missing)
            ));
        }
    }

    // The commit by incarnation `i` of partition `p` past `offset`, after
    // its handout at `line` and before it lost the partition (and before
    // `limit`), if there is one.
    let covering =
        |i: usize, p: i32, offset: i64, line: usize, limit: usize| -> Option<(usize, i64)> {
            let lost = losses[i]
                .get(&p)
                .and_then(|l| l.get(l.partition_point(|&x| x <= line)).copied())
                .unwrap_or(usize::MAX);
            let end = lost.min(limit);
            let list = commits[i].get(&p)?;
            let from = list.partition_point(|&(at, _)| at <= line);
            list[from..]
                .iter()
                .take_while(|&&(at, _)| at < end)
                .find(|&&(_, next)| next > offset)
                .copied()
        };
    let mut duplicated: Vec<((i32, i64), Vec<Handout>)> =
        handouts.into_iter().filter(|(_, h)| h.len() > 1).collect();
    duplicated.sort_unstable_by_key(|(key, _)| *key);
    a.duplicated_offsets = duplicated.len();
    for ((p, offset), mut hs) in duplicated {
        // Across processes, the order the parent read the lines in: the
        // handouts of one offset by two members are a rebalance apart.
        hs.sort_unstable();
        for pair in hs.windows(2) {
            let ((_, prev, prev_line), (_, cur, cur_line)) = (pair[0], pair[1]);
            a.duplicates += 1;
            let limit = if prev == cur {
                a.same_incarnation_duplicates += 1;
                cur_line
            } else {
                usize::MAX
            };
            if let Some((commit_line, next)) = covering(prev, p, offset, prev_line, limit) {
                a.unexplained_count += 1;
                if a.unexplained.len() < 20 {
                    a.unexplained.push(format!(
                        "  {p}@{offset}: handed out by {} (line {prev_line}), which committed \
                         {next} (line {commit_line}) while still owning the partition, then \
                         again by {} (line {cur_line})",
                        incarnations[prev].label, incarnations[cur].label
                    ));
                }
            }
        }
    }
    a
}
