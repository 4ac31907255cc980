//! Chassis registration against a real OVN central: the rows ironflow
//! writes are what `ovn-sbctl show` lists for a stock chassis, writing them
//! again after a restart changes nothing, and a clean exit removes them.

use ironflow_control::chassis::{claim, register, release, unregister, ChassisConfig};
use ironflow_control::ovsdb::{parse_remotes, Client, ClientOptions};
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::seed::build_seed;

fn config() -> ChassisConfig {
    ChassisConfig {
        name: "ironflow-a".into(),
        hostname: "node-a".into(),
        encap_type: "geneve".into(),
        encap_ip: "10.99.0.5".parse().unwrap(),
        bridge_mappings: "physnet1:br-phys".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registers_like_a_stock_chassis_and_leaves_cleanly() {
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("seed");
    let remote = parse_remotes(&central.sb_remote()).unwrap().remove(0);
    let (client, _events) = Client::connect(&remote, &ClientOptions::default())
        .await
        .unwrap();

    register(&client, &config()).await.unwrap();
    let show = central.sbctl(&["show"]).unwrap();
    assert!(show.contains("Chassis ironflow-a"), "{show}");
    assert!(show.contains("hostname: node-a"), "{show}");
    assert!(show.contains("Encap geneve"), "{show}");
    assert!(show.contains("ip: \"10.99.0.5\""), "{show}");
    assert!(show.contains("options: {csum=\"true\"}"), "{show}");
    let private = central
        .sbctl(&["--bare", "--columns=name", "list", "Chassis_Private"])
        .unwrap();
    assert_eq!(private.trim(), "ironflow-a");
    let mappings = central
        .sbctl(&[
            "get",
            "Chassis",
            "ironflow-a",
            "other_config:ovn-bridge-mappings",
        ])
        .unwrap();
    assert_eq!(mappings.trim(), "\"physnet1:br-phys\"");

    // A restart registers again: the same one chassis and one encap.
    register(&client, &config()).await.unwrap();
    let count = |table: &str| {
        central
            .sbctl(&["--bare", "--columns=_uuid", "list", table])
            .unwrap()
            .lines()
            .filter(|l| !l.trim().is_empty())
            .count()
    };
    assert_eq!(
        (count("Chassis"), count("Encap"), count("Chassis_Private")),
        (1, 1, 1)
    );
    // Claiming a port: it shows under the chassis, and northd marks the
    // NB port up, as with ovn-controller.
    claim(&client, "sshd-2", "ironflow-a").await.unwrap();
    assert!(central
        .sbctl(&["show"])
        .unwrap()
        .contains("Port_Binding sshd-2"));
    central.sync().unwrap();
    assert_eq!(
        central.nbctl(&["lsp-get-up", "sshd-2"]).unwrap().trim(),
        "up"
    );
    let e = claim(&client, "no-such-port", "ironflow-a")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("iface-id"), "{e}");
    release(&client, "sshd-2").await.unwrap();
    central.sync().unwrap();
    assert_eq!(
        central.nbctl(&["lsp-get-up", "sshd-2"]).unwrap().trim(),
        "down"
    );
    claim(&client, "sshd-2", "ironflow-a").await.unwrap();

    // Northd still runs and answers.
    central.sync().unwrap();

    unregister(&client, "ironflow-a").await.unwrap();
    let show = central.sbctl(&["show"]).unwrap();
    assert!(!show.contains("ironflow-a"), "{show}");
    assert_eq!(
        (count("Chassis"), count("Encap"), count("Chassis_Private")),
        (0, 0, 0)
    );
    let bound = central
        .sbctl(&[
            "--bare",
            "--columns=chassis",
            "find",
            "Port_Binding",
            "logical_port=sshd-2",
        ])
        .unwrap();
    assert_eq!(bound.trim(), "", "the weak reference emptied");
}
