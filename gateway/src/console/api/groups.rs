//! `groups` and `groups/{id}`: groups with their roles and members.

use super::error::ApiError;
use super::guard::scope;
use super::paging::{encode, page, search_term};
use super::{Admin, Api};
use crate::directory::model::{Group, MemberKind};
use crate::directory::store::browse::Browse;
use crate::directory::store::{Attr, Filter, Op, Value};
use crate::local_request::LocalRequest;
use serde_json::{json, Value as Json};

fn summary(g: &Group) -> Json {
    json!({
        "id": g.id,
        "tenant": g.tenant,
        "displayName": g.display_name,
        "roles": g.roles,
        "members": g.members.len(),
        "source": g.source,
        "created": g.created,
        "modified": g.modified,
    })
}

impl Api {
    pub(super) async fn list_groups(
        &self,
        admin: &Admin,
        req: &LocalRequest,
    ) -> Result<Json, ApiError> {
        let tenant = scope(admin, req.param("tenant"))?;
        let filter = search_term(&req.params)?
            .map(|q| Filter::Cmp(Attr::DisplayName, Op::Sw, Value::Str(q.to_string())));
        let (limit, after) = page(&req.params)?;
        let p = self
            .directory
            .browse_groups(&Browse {
                tenant: tenant.as_deref(),
                filter: filter.as_ref(),
                after: after.as_ref(),
                limit,
            })
            .await?;
        Ok(json!({
            "groups": p.items.iter().map(summary).collect::<Vec<_>>(),
            "next_cursor": p.next.as_ref().map(encode),
        }))
    }

    pub(super) async fn show_group(&self, admin: &Admin, id: &str) -> Result<Json, ApiError> {
        let g = match &admin.tenant {
            Some(t) => self.directory.get_group(t, id).await?,
            None => self.directory.get_group_any_tenant(id).await?,
        };
        let mut v = summary(&g);
        v["externalId"] = json!(g.external_id);
        v["members"] = g
            .members
            .iter()
            .map(|m| {
                json!({
                    "id": m.id,
                    "type": match m.kind { MemberKind::User => "User", MemberKind::Group => "Group" },
                })
            })
            .collect();
        Ok(v)
    }
}
