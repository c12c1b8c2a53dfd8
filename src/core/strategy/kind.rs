//! [`StrategyKind`]: the built-in strategies by name, for configuration
//! files, and their parsing.

use super::{
    HealthBased, LeastConnections, PowerOfTwoChoices, Priority, Random, RoundRobin, Strategy,
    WeightedRoundRobin,
};
use crate::error::Error;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// The built-in strategies, by name, for configuration files.
///
/// Serialized in kebab-case; the snake_case names of [`Strategy::name`] and
/// a few aliases are accepted too:
///
/// | variant | name | aliases |
/// |---|---|---|
/// | [`RoundRobin`](StrategyKind::RoundRobin) | `round-robin` | `round_robin`, `active-active` |
/// | [`WeightedRoundRobin`](StrategyKind::WeightedRoundRobin) | `weighted-round-robin` | `weighted_round_robin`, `weighted` |
/// | [`LeastConnections`](StrategyKind::LeastConnections) | `least-connections` | `least_connections`, `least-conn` |
/// | [`Random`](StrategyKind::Random) | `random` | |
/// | [`PowerOfTwoChoices`](StrategyKind::PowerOfTwoChoices) | `power-of-two-choices` | `power_of_two_choices`, `p2c` |
/// | [`Priority`](StrategyKind::Priority) | `priority` | `active-passive` |
/// | [`HealthBased`](StrategyKind::HealthBased) | `health-based` | `health_based` |
///
/// ```
/// use failover_pool::core::strategy::StrategyKind;
///
/// let kind: StrategyKind = "p2c".parse()?;
/// assert_eq!(kind, StrategyKind::PowerOfTwoChoices);
/// assert_eq!(kind.build().name(), "p2c");
/// assert_eq!("active-active".parse::<StrategyKind>()?, StrategyKind::RoundRobin);
/// assert!("fastest".parse::<StrategyKind>().is_err());
/// # Ok::<(), failover_pool::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StrategyKind {
    /// [`RoundRobin`] (also for "active-active").
    #[default]
    #[serde(alias = "round_robin", alias = "active-active")]
    RoundRobin,
    /// [`WeightedRoundRobin`].
    #[serde(alias = "weighted_round_robin", alias = "weighted")]
    WeightedRoundRobin,
    /// [`LeastConnections`].
    #[serde(alias = "least_connections", alias = "least-conn")]
    LeastConnections,
    /// [`Random`].
    Random,
    /// [`PowerOfTwoChoices`] (P2C peak-EWMA).
    #[serde(alias = "power_of_two_choices", alias = "p2c")]
    PowerOfTwoChoices,
    /// [`Priority`] (active-passive), with the default hold-down.
    #[serde(alias = "active-passive")]
    Priority,
    /// [`HealthBased`].
    #[serde(alias = "health_based")]
    HealthBased,
}

/// Every accepted name (canonical first) with its kind; keep in step with
/// the serde attributes above.
const KIND_NAMES: &[(&str, StrategyKind)] = &[
    ("round-robin", StrategyKind::RoundRobin),
    ("weighted-round-robin", StrategyKind::WeightedRoundRobin),
    ("least-connections", StrategyKind::LeastConnections),
    ("random", StrategyKind::Random),
    ("power-of-two-choices", StrategyKind::PowerOfTwoChoices),
    ("priority", StrategyKind::Priority),
    ("health-based", StrategyKind::HealthBased),
    ("round_robin", StrategyKind::RoundRobin),
    ("active-active", StrategyKind::RoundRobin),
    ("weighted_round_robin", StrategyKind::WeightedRoundRobin),
    ("weighted", StrategyKind::WeightedRoundRobin),
    ("least_connections", StrategyKind::LeastConnections),
    ("least-conn", StrategyKind::LeastConnections),
    ("power_of_two_choices", StrategyKind::PowerOfTwoChoices),
    ("p2c", StrategyKind::PowerOfTwoChoices),
    ("active-passive", StrategyKind::Priority),
    ("health_based", StrategyKind::HealthBased),
];

impl StrategyKind {
    /// Every built-in, in declaration order.
    pub const ALL: [StrategyKind; 7] = [
        StrategyKind::RoundRobin,
        StrategyKind::WeightedRoundRobin,
        StrategyKind::LeastConnections,
        StrategyKind::Random,
        StrategyKind::PowerOfTwoChoices,
        StrategyKind::Priority,
        StrategyKind::HealthBased,
    ];

    /// The canonical (kebab-case) name.
    pub const fn as_str(self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round-robin",
            StrategyKind::WeightedRoundRobin => "weighted-round-robin",
            StrategyKind::LeastConnections => "least-connections",
            StrategyKind::Random => "random",
            StrategyKind::PowerOfTwoChoices => "power-of-two-choices",
            StrategyKind::Priority => "priority",
            StrategyKind::HealthBased => "health-based",
        }
    }

    /// A fresh instance of the strategy, with default settings.
    pub fn build(&self) -> Arc<dyn Strategy> {
        match self {
            StrategyKind::RoundRobin => Arc::new(RoundRobin::new()),
            StrategyKind::WeightedRoundRobin => Arc::new(WeightedRoundRobin::new()),
            StrategyKind::LeastConnections => Arc::new(LeastConnections::new()),
            StrategyKind::Random => Arc::new(Random::new()),
            StrategyKind::PowerOfTwoChoices => Arc::new(PowerOfTwoChoices::new()),
            StrategyKind::Priority => Arc::new(Priority::default()),
            StrategyKind::HealthBased => Arc::new(HealthBased::new()),
        }
    }
}

impl fmt::Display for StrategyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StrategyKind {
    type Err = Error;

    /// Parses a name or alias (ASCII case-insensitive, surrounding
    /// whitespace ignored); the error lists the valid names.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let name = s.trim();
        KIND_NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, kind)| kind)
            .ok_or_else(|| {
                let valid: Vec<&str> = KIND_NAMES.iter().map(|(n, _)| *n).collect();
                Error::Config(format!(
                    "unknown load-balancing strategy `{name}`; valid names: {}",
                    valid.join(", ")
                ))
            })
    }
}

#[cfg(test)]
mod tests;
