//! A minimal custom controller: ConfigMaps annotated `example.com/mirror: "true"` get an owned copy.

use std::time::Duration;

use wasmkube_sdk::k8s_openapi::api::core::v1::ConfigMap;
use wasmkube_sdk::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use wasmkube_sdk::owner::{controller_ref, is_controlled_by};
use wasmkube_sdk::{Context, Controller, Error, EventType, ObjectKey, Outcome, Registration};

pub struct Mirror;

wasmkube_sdk::export_controller!(Mirror);

impl Controller for Mirror {
    fn registration() -> Registration {
        Registration::new::<ConfigMap>("mirror").owns::<ConfigMap>()
    }

    fn reconcile(ctx: &Context<'_>, key: ObjectKey) -> Result<Outcome, Error> {
        let Some(source) = ctx.get::<ConfigMap>(&key.namespace, &key.name)? else {
            return Ok(Outcome::Done); // deleted: the garbage collector removes the copy
        };
        let annotations = source.metadata.annotations.clone().unwrap_or_default();
        if annotations.get("example.com/mirror").map(String::as_str) != Some("true") {
            return Ok(Outcome::Done);
        }
        let name = format!("{}-mirror", key.name);
        let want = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(key.namespace.clone()),
                owner_references: Some(vec![controller_ref(&source)?]),
                ..ObjectMeta::default()
            },
            data: source.data.clone(),
            ..ConfigMap::default()
        };
        match ctx.get::<ConfigMap>(&key.namespace, &name)? {
            None => {
                ctx.create(&want)?;
                ctx.event(
                    &source,
                    EventType::Normal,
                    "Mirrored",
                    &format!("Created {name}"),
                )?;
            }
            Some(copy) if !is_controlled_by(&copy.metadata, &source) => {
                let message = format!("{name} exists and is not ours");
                ctx.event(&source, EventType::Warning, "Conflict", &message)?;
                return Ok(Outcome::RequeueAfter(Duration::from_secs(60)));
            }
            Some(copy) if copy.data != want.data => {
                ctx.update(&ConfigMap {
                    data: want.data,
                    ..copy
                })?;
            }
            Some(_) => {}
        }
        Ok(Outcome::Done)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use wasmkube_sdk::testing::FakeHost;

    #[test]
    fn creates_then_updates_the_copy() {
        let fake = FakeHost::new();
        let source = ConfigMap {
            metadata: ObjectMeta {
                name: Some("app".into()),
                namespace: Some("default".into()),
                annotations: Some(BTreeMap::from([(
                    "example.com/mirror".into(),
                    "true".into(),
                )])),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([("k".into(), "v1".into())])),
            ..ConfigMap::default()
        };
        fake.insert(&source).unwrap();
        let key = ObjectKey::new("default", "app");
        assert_eq!(fake.reconcile::<Mirror>(&key).unwrap(), Outcome::Done);

        fake.modify::<ConfigMap>("default", "app", |cm| {
            cm.data = Some(BTreeMap::from([("k".into(), "v2".into())]));
        })
        .unwrap();
        fake.reconcile::<Mirror>(&key).unwrap();

        let copy: ConfigMap = fake
            .context()
            .get("default", "app-mirror")
            .unwrap()
            .unwrap();
        assert_eq!(copy.data.unwrap()["k"], "v2");
        assert_eq!(fake.events()[0].reason, "Mirrored");
    }
}
