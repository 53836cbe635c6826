//! Dependencies between stacks: checked once (unknown names, duplicates, cycles), then
//! ordered into levels — every stack of a level depends only on stacks of earlier levels, so
//! the stacks of one level can be recovered at the same time.

use std::collections::HashMap;
use std::fmt;

/// What is wrong with a set of dependencies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Two stacks with one name.
    #[error("stack `{0}` is defined twice")]
    Duplicate(String),
    /// A dependency on a stack that does not exist.
    #[error("stack `{stack}` depends on unknown stack `{dependency}`")]
    UnknownDependency {
        /// The dependant.
        stack: String,
        /// The missing stack.
        dependency: String,
    },
    /// Stacks that depend on each other in a circle: `[a, b, a]` for `a -> b -> a`.
    #[error("dependency cycle: {}", CyclePath(.0))]
    Cycle(Vec<String>),
}

/// `a -> b -> c -> a`.
#[derive(Debug)]
pub struct CyclePath<'a>(pub &'a [String]);

impl fmt::Display for CyclePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" -> "))
    }
}

/// Stacks and their dependencies, known to be complete and acyclic.
#[derive(Debug, Clone)]
pub struct DependencyGraph {
    names: Vec<String>,
    dependencies: Vec<Vec<usize>>,
    dependants: Vec<Vec<usize>>,
    levels: Vec<Vec<usize>>,
}

impl DependencyGraph {
    /// Checks `stacks` (name, dependencies) and orders them. Every problem is returned, not
    /// only the first; cycles are each named once, starting at their smallest name.
    pub fn new<'a, I, D>(stacks: I) -> Result<DependencyGraph, Vec<GraphError>>
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = &'a str>,
    {
        let mut errors = Vec::new();
        let mut names = Vec::new();
        let mut raw_deps = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        for (name, deps) in stacks {
            if index.insert(name, names.len()).is_some() {
                errors.push(GraphError::Duplicate(name.to_string()));
                continue;
            }
            names.push(name.to_string());
            raw_deps.push(deps.into_iter().collect::<Vec<&str>>());
        }
        let mut dependencies = vec![Vec::new(); names.len()];
        for (i, deps) in raw_deps.iter().enumerate() {
            for dep in deps {
                match index.get(dep) {
                    Some(&j) if !dependencies[i].contains(&j) => dependencies[i].push(j),
                    Some(_) => {}
                    None => errors.push(GraphError::UnknownDependency {
                        stack: names[i].clone(),
                        dependency: dep.to_string(),
                    }),
                }
            }
        }
        for cycle in find_cycles(&names, &dependencies) {
            errors.push(GraphError::Cycle(
                cycle.iter().map(|&i| names[i].clone()).collect(),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut dependants = vec![Vec::new(); names.len()];
        for (i, deps) in dependencies.iter().enumerate() {
            for &d in deps {
                dependants[d].push(i);
            }
        }
        let levels = levels(&names, &dependencies);
        Ok(DependencyGraph {
            names,
            dependencies,
            dependants,
            levels,
        })
    }

    /// Number of stacks.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether there are no stacks.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of stack `i` (indices follow the input order).
    pub fn name(&self, i: usize) -> &str {
        &self.names[i]
    }

    /// What stack `i` depends on directly.
    pub fn dependencies(&self, i: usize) -> &[usize] {
        &self.dependencies[i]
    }

    /// What depends on stack `i` directly.
    pub fn dependants(&self, i: usize) -> &[usize] {
        &self.dependants[i]
    }

    /// Levels in recovery order; inside a level, stacks are sorted by name.
    pub fn levels(&self) -> &[Vec<usize>] {
        &self.levels
    }

    /// The level of every stack (0 for those without dependencies).
    pub fn level_of(&self) -> Vec<usize> {
        let mut level = vec![0; self.names.len()];
        for (l, stacks) in self.levels.iter().enumerate() {
            for &i in stacks {
                level[i] = l;
            }
        }
        level
    }
}

/// Longest-path layering (Kahn's algorithm, level by level); the graph is acyclic.
fn levels(names: &[String], dependencies: &[Vec<usize>]) -> Vec<Vec<usize>> {
    let mut remaining: Vec<usize> = dependencies.iter().map(Vec::len).collect();
    let mut dependants = vec![Vec::new(); names.len()];
    for (i, deps) in dependencies.iter().enumerate() {
        for &d in deps {
            dependants[d].push(i);
        }
    }
    let mut current: Vec<usize> = (0..names.len()).filter(|&i| remaining[i] == 0).collect();
    let mut out = Vec::new();
    while !current.is_empty() {
        current.sort_by(|&a, &b| names[a].cmp(&names[b]));
        let mut next = Vec::new();
        for &i in &current {
            for &d in &dependants[i] {
                remaining[d] -= 1;
                if remaining[d] == 0 {
                    next.push(d);
                }
            }
        }
        out.push(std::mem::replace(&mut current, next));
    }
    out
}

/// Finds cycles by depth-first search from each node in name order; each cycle found is
/// rotated to start at its smallest name and reported once. At least one cycle of every
/// strongly connected component that has one is found.
fn find_cycles(names: &[String], dependencies: &[Vec<usize>]) -> Vec<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnPath,
        Done,
    }
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| names[a].cmp(&names[b]));
    let sorted_deps: Vec<Vec<usize>> = dependencies
        .iter()
        .map(|deps| {
            let mut deps = deps.clone();
            deps.sort_by(|&a, &b| names[a].cmp(&names[b]));
            deps
        })
        .collect();
    let mut marks = vec![Mark::New; names.len()];
    let mut cycles: Vec<Vec<usize>> = Vec::new();
    for &start in &order {
        if marks[start] != Mark::New {
            continue;
        }
        // Iterative DFS: (node, index of the next dependency to follow).
        let mut path: Vec<(usize, usize)> = vec![(start, 0)];
        marks[start] = Mark::OnPath;
        while let Some(top) = path.last_mut() {
            let node = top.0;
            let next = top.1;
            top.1 += 1;
            let Some(&dep) = sorted_deps[node].get(next) else {
                marks[node] = Mark::Done;
                path.pop();
                continue;
            };
            match marks[dep] {
                Mark::New => {
                    marks[dep] = Mark::OnPath;
                    path.push((dep, 0));
                }
                Mark::OnPath => {
                    let from = path.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                    let mut cycle: Vec<usize> = path[from..].iter().map(|&(n, _)| n).collect();
                    let smallest = (0..cycle.len())
                        .min_by(|&a, &b| names[cycle[a]].cmp(&names[cycle[b]]))
                        .unwrap_or(0);
                    cycle.rotate_left(smallest);
                    cycle.push(cycle[0]);
                    if !cycles.contains(&cycle) {
                        cycles.push(cycle);
                    }
                }
                Mark::Done => {}
            }
        }
    }
    cycles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(
        edges: &[(&'static str, &[&'static str])],
    ) -> Result<DependencyGraph, Vec<GraphError>> {
        DependencyGraph::new(edges.iter().map(|(n, d)| (*n, d.iter().copied())))
    }

    fn level_names(g: &DependencyGraph) -> Vec<Vec<&str>> {
        g.levels()
            .iter()
            .map(|l| l.iter().map(|&i| g.name(i)).collect())
            .collect()
    }

    #[test]
    fn levels_put_each_stack_after_all_it_depends_on() {
        let g = graph(&[
            ("web", &["db", "cache"]),
            ("db", &[]),
            ("cache", &["db"]),
            ("other", &[]),
            ("report", &["web"]),
        ])
        .unwrap();
        assert_eq!(
            level_names(&g),
            vec![
                vec!["db", "other"],
                vec!["cache"],
                vec!["web"],
                vec!["report"]
            ]
        );
    }

    #[test]
    fn cycles_are_named_from_their_smallest_stack() {
        let errors = graph(&[
            ("c", &["a"]),
            ("a", &["b"]),
            ("b", &["c"]),
            ("self", &["self"]),
            ("ok", &[]),
        ])
        .unwrap_err();
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            messages,
            vec![
                "dependency cycle: a -> b -> c -> a",
                "dependency cycle: self -> self"
            ]
        );
    }

    #[test]
    fn every_problem_is_reported() {
        let errors = graph(&[("a", &["missing"]), ("a", &[]), ("b", &["b"])]).unwrap_err();
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors.contains(&GraphError::Duplicate("a".into())));
        assert!(errors.contains(&GraphError::UnknownDependency {
            stack: "a".into(),
            dependency: "missing".into()
        }));
    }
}
