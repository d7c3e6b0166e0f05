//! The registry's rules, one test per rule.

use super::*;

fn ip(address: &str, pool: Option<&str>) -> DedicatedIp {
    DedicatedIp {
        address: address.parse().unwrap(),
        pool: pool.map(str::to_string),
        ehlo_hostname: None,
        weight: 1,
        warmup_started: None,
        warmup_percentage: None,
        suspended: false,
        node: None,
    }
}

#[test]
fn in_a_fleet_only_the_nodes_own_ips_are_sources_and_the_others_are_reached_by_node() {
    let mut registry = Registry::default();
    registry.add_pool("marketing").unwrap();
    let on = |address: &str, node: &str| DedicatedIp {
        node: Some(node.to_string()),
        ..ip(address, Some("marketing"))
    };
    registry.add_ip(on("127.0.0.2", "a")).unwrap();
    registry.add_ip(on("127.0.0.3", "b")).unwrap();
    registry
        .add_ip(DedicatedIp {
            suspended: true,
            ..on("127.0.0.4", "c")
        })
        .unwrap();
    registry.set_local_node(Some("a".into()));
    let PoolMembers::Addresses(members) = registry.pool_members("marketing") else {
        panic!("a named pool has addresses");
    };
    let addresses: Vec<String> = members.iter().map(|m| m.address.to_string()).collect();
    assert_eq!(addresses, ["127.0.0.2"]);
    assert_eq!(
        registry.remote_nodes_for("marketing"),
        ["b"],
        "c's only IP is suspended"
    );
    assert_eq!(registry.local_ips().count(), 1);
    assert_eq!(registry.ips().len(), 3, "the API sees every node's IPs");
}

fn sample() -> Registry {
    let mut registry = Registry::default();
    registry.add_pool("marketing").unwrap();
    registry.add_ip(ip("127.0.0.2", Some("marketing"))).unwrap();
    registry.add_ip(ip("127.0.0.3", None)).unwrap();
    registry
        .add_shared_ip("127.0.0.9".parse().unwrap())
        .unwrap();
    registry
        .add_configuration_set(ConfigurationSet {
            suppressed_reasons: None,
            name: "promo".into(),
            sending_pool: Some("marketing".into()),
            ..Default::default()
        })
        .unwrap();
    registry
        .add_configuration_set(ConfigurationSet {
            suppressed_reasons: None,
            name: "plain".into(),
            sending_pool: None,
            ..Default::default()
        })
        .unwrap();
    registry
}

#[test]
fn pools_of_an_address() {
    let registry = sample();
    assert_eq!(
        registry.pools_of("127.0.0.2".parse().unwrap()),
        ["marketing"]
    );
    assert_eq!(
        registry.pools_of("127.0.0.3".parse().unwrap()),
        [DEFAULT_POOL]
    );
    assert_eq!(
        registry.pools_of("127.0.0.9".parse().unwrap()),
        [SHARED_POOL]
    );
    assert!(registry.pools_of("127.0.0.77".parse().unwrap()).is_empty());
}

fn addresses(members: PoolMembers) -> Vec<String> {
    match members {
        PoolMembers::Addresses(list) => list.iter().map(|s| s.address.to_string()).collect(),
        PoolMembers::HostDefault => vec!["host-default".into()],
    }
}

#[test]
fn configuration_set_selects_its_pool() {
    let registry = sample();
    assert_eq!(registry.pool_for(Some("promo")).unwrap(), "marketing");
    assert_eq!(registry.pool_for(Some("plain")).unwrap(), DEFAULT_POOL);
    assert_eq!(registry.pool_for(None).unwrap(), DEFAULT_POOL);
    assert_eq!(
        registry.pool_for(Some("PROMO")),
        Err(RegistryError::UnknownConfigurationSet("PROMO".into()))
    );
}

#[test]
fn default_pool_is_every_ip_without_a_named_pool() {
    let registry = sample();
    assert_eq!(
        addresses(registry.pool_members(DEFAULT_POOL)),
        ["127.0.0.3"]
    );
    assert_eq!(addresses(registry.pool_members("marketing")), ["127.0.0.2"]);
    assert_eq!(addresses(registry.pool_members(SHARED_POOL)), ["127.0.0.9"]);
    assert!(addresses(registry.pool_members("nope")).is_empty());
}

#[test]
fn empty_shared_pool_means_host_default() {
    let registry = Registry::default();
    assert_eq!(registry.pool_members(SHARED_POOL), PoolMembers::HostDefault);
    // ...but an empty default pool stays empty: mail waits instead of leaking.
    assert_eq!(
        registry.pool_members(DEFAULT_POOL),
        PoolMembers::Addresses(vec![])
    );
}

#[test]
fn rules_are_enforced() {
    let mut registry = sample();
    assert_eq!(
        registry.add_pool(DEFAULT_POOL),
        Err(RegistryError::ReservedPoolName(DEFAULT_POOL.into()))
    );
    assert_eq!(
        registry.add_pool("Bad Name"),
        Err(RegistryError::InvalidPoolName("Bad Name".into()))
    );
    assert_eq!(
        registry.add_pool("marketing"),
        Err(RegistryError::DuplicatePool("marketing".into()))
    );
    assert!(matches!(
        registry.add_ip(ip("127.0.0.2", None)),
        Err(RegistryError::DuplicateIp(_))
    ));
    assert!(matches!(
        registry.add_ip(ip("127.0.0.9", None)),
        Err(RegistryError::SharedAndDedicated(_))
    ));
    assert_eq!(
        registry.add_ip(ip("127.0.0.4", Some("ghost"))),
        Err(RegistryError::UnknownPool("ghost".into()))
    );
    assert_eq!(
        registry.add_configuration_set(ConfigurationSet {
            suppressed_reasons: None,
            name: "x".into(),
            sending_pool: Some("ghost".into()),
            ..Default::default()
        }),
        Err(RegistryError::UnknownPool("ghost".into()))
    );
    assert!(matches!(
        registry.add_configuration_set(ConfigurationSet {
            suppressed_reasons: None,
            name: "bad name".into(),
            sending_pool: None,
            ..Default::default()
        }),
        Err(RegistryError::InvalidConfigurationSetName(_))
    ));
    assert!(
        registry
            .add_configuration_set(ConfigurationSet {
                suppressed_reasons: None,
                name: "shared".into(),
                sending_pool: Some(SHARED_POOL.into()),
                max_delivery_seconds: Some(300),
                tls_policy: None,
                ..Default::default()
            })
            .is_ok()
    );
}

#[test]
fn name_rules() {
    assert!(is_valid_pool_name("a-b_9"));
    assert!(!is_valid_pool_name(""));
    assert!(!is_valid_pool_name(&"a".repeat(65)));
    assert!(!is_valid_pool_name("Upper"));
    assert!(is_valid_configuration_set_name("Upper_ok-1"));
    assert!(!is_valid_configuration_set_name("dot.no"));
}

#[test]
fn source_addresses_are_canonical_and_usable() {
    let mut registry = Registry::default();
    registry.add_ip(ip("::ffff:127.0.0.2", None)).unwrap();
    assert_eq!(registry.ips()[0].address.to_string(), "127.0.0.2");
    assert_eq!(
        registry.add_ip(ip("127.0.0.2", None)),
        Err(RegistryError::DuplicateIp("127.0.0.2".parse().unwrap())),
        "the same IP in another spelling"
    );
    for bad in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
        assert!(
            matches!(
                registry.add_ip(ip(bad, None)),
                Err(RegistryError::UnusableAddress(..))
            ),
            "{bad}"
        );
        assert!(
            matches!(
                registry.add_shared_ip(bad.parse().unwrap()),
                Err(RegistryError::UnusableAddress(..))
            ),
            "{bad} in the shared pool"
        );
    }
}
