//! Unit tests of strategy names and parsing.

use super::*;

#[test]
fn strategy_kind_parses_names_and_aliases() {
    for &(name, kind) in KIND_NAMES {
        assert_eq!(name.parse::<StrategyKind>().unwrap(), kind, "{name}");
        assert_eq!(
            name.to_uppercase().parse::<StrategyKind>().unwrap(),
            kind,
            "{name}"
        );
        let de: StrategyKind = serde_yaml_ng::from_str(name).unwrap();
        assert_eq!(de, kind, "{name}");
    }
    for kind in StrategyKind::ALL {
        assert_eq!(kind.as_str().parse::<StrategyKind>().unwrap(), kind);
        let yaml = serde_yaml_ng::to_string(&kind).unwrap();
        assert_eq!(yaml.trim(), kind.as_str());
        assert_eq!(kind.to_string(), kind.as_str());
    }
    assert_eq!(
        "active-active".parse::<StrategyKind>().unwrap(),
        StrategyKind::RoundRobin
    );
    assert_eq!(
        " weighted ".parse::<StrategyKind>().unwrap(),
        StrategyKind::WeightedRoundRobin
    );
    assert_eq!(StrategyKind::default(), StrategyKind::RoundRobin);
    let err = "fastest".parse::<StrategyKind>().unwrap_err().to_string();
    assert!(
        err.contains("fastest") && err.contains("round-robin") && err.contains("p2c"),
        "{err}"
    );
    assert!(serde_yaml_ng::from_str::<StrategyKind>("fastest").is_err());
}

#[test]
fn strategy_kind_builds_the_named_strategy() {
    let names: Vec<_> = StrategyKind::ALL.iter().map(|k| k.build().name()).collect();
    assert_eq!(
        names,
        [
            "round_robin",
            "weighted_round_robin",
            "least_connections",
            "random",
            "p2c",
            "priority",
            "health_based"
        ]
    );
}
