//! The role matrix: what each role may do, in which kind of conversation, in which state.
//! Documented for clients on `messaging.conversation.v1.Role`; tested here cell by cell.

use super::{Kind, Role};

/// Something a participant may want to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read messages and participants.
    Read,
    /// Post, edit or delete one's own messages.
    Post,
    /// React.
    React,
    /// Delete others' messages, read revisions.
    Moderate,
    /// Add, remove, re-role participants.
    ManageParticipants,
    /// Change title and description.
    Update,
    /// Archive and unarchive.
    Archive,
    /// Delete and undelete.
    Delete,
    /// Hand over the owner role.
    TransferOwnership,
}

/// Why an action is denied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// Not a participant.
    NotParticipant,
    /// Role too low.
    RoleInsufficient,
    /// The conversation is archived and the action would change it.
    Archived,
    /// The action does not exist for this kind.
    NotSupported,
}

/// The lowest role that may perform `action` in a conversation of `kind`, or `None` when the
/// action does not exist for that kind.
pub fn required_role(kind: Kind, action: Action) -> Option<Role> {
    match (kind, action) {
        (Kind::Direct, Action::ManageParticipants | Action::TransferOwnership) => None,
        (Kind::Direct, Action::Update | Action::Archive | Action::Delete | Action::Moderate) => {
            Some(Role::Member)
        }
        (_, Action::Read) => Some(Role::Viewer),
        (_, Action::Post | Action::React) => Some(Role::Member),
        (_, Action::Moderate | Action::ManageParticipants | Action::Update | Action::Archive) => {
            Some(Role::Admin)
        }
        (_, Action::Delete | Action::TransferOwnership) => Some(Role::Owner),
    }
}

/// Whether `action` changes content or membership, which an archived conversation forbids.
/// Archiving itself (and unarchiving) and deleting stay possible.
fn blocked_while_archived(action: Action) -> bool {
    matches!(
        action,
        Action::Post
            | Action::React
            | Action::Moderate
            | Action::ManageParticipants
            | Action::Update
            | Action::TransferOwnership
    )
}

/// Decides whether a user with `role` (`None`: not a participant) may perform `action`.
pub fn check(kind: Kind, archived: bool, role: Option<Role>, action: Action) -> Result<(), Denial> {
    let required = required_role(kind, action).ok_or(Denial::NotSupported)?;
    let role = role.ok_or(Denial::NotParticipant)?;
    if role < required {
        return Err(Denial::RoleInsufficient);
    }
    if archived && blocked_while_archived(action) {
        return Err(Denial::Archived);
    }
    Ok(())
}

/// Whether `actor` may give `new_role` to a participant whose role is `current` (`None` when
/// the user is being added), or remove that participant (`new_role` `None`). One may only act on
/// roles below one's own and grant roles below one's own; nobody acts on the owner this way.
pub fn may_manage(actor: Role, current: Option<Role>, new_role: Option<Role>) -> bool {
    actor >= Role::Admin
        && current.is_none_or(|current| current < actor)
        && new_role.is_none_or(|new_role| new_role < actor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_ACTIONS: [Action; 9] = [
        Action::Read,
        Action::Post,
        Action::React,
        Action::Moderate,
        Action::ManageParticipants,
        Action::Update,
        Action::Archive,
        Action::Delete,
        Action::TransferOwnership,
    ];

    fn allowed(kind: Kind, role: Role) -> Vec<Action> {
        ALL_ACTIONS
            .into_iter()
            .filter(|action| check(kind, false, Some(role), *action).is_ok())
            .collect()
    }

    #[test]
    fn group_matrix() {
        use Action::*;
        assert_eq!(allowed(Kind::Group, Role::Owner), ALL_ACTIONS.to_vec());
        assert_eq!(
            allowed(Kind::Group, Role::Admin),
            vec![
                Read,
                Post,
                React,
                Moderate,
                ManageParticipants,
                Update,
                Archive
            ]
        );
        assert_eq!(allowed(Kind::Group, Role::Member), vec![Read, Post, React]);
        assert_eq!(allowed(Kind::Group, Role::Viewer), vec![Read]);
        assert_eq!(
            allowed(Kind::Channel, Role::Member),
            vec![Read, Post, React]
        );
    }

    #[test]
    fn direct_participants_are_equal_and_cannot_manage() {
        use Action::*;
        assert_eq!(
            allowed(Kind::Direct, Role::Member),
            vec![Read, Post, React, Moderate, Update, Archive, Delete]
        );
        assert_eq!(
            check(Kind::Direct, false, Some(Role::Owner), TransferOwnership),
            Err(Denial::NotSupported)
        );
    }

    #[test]
    fn archived_is_read_only() {
        assert_eq!(
            check(Kind::Group, true, Some(Role::Owner), Action::Post),
            Err(Denial::Archived)
        );
        assert_eq!(
            check(Kind::Group, true, Some(Role::Viewer), Action::Read),
            Ok(())
        );
        assert_eq!(
            check(Kind::Group, true, Some(Role::Admin), Action::Archive),
            Ok(())
        );
        assert_eq!(
            check(Kind::Group, true, Some(Role::Owner), Action::Delete),
            Ok(())
        );
        assert_eq!(
            check(Kind::Group, true, None, Action::Read),
            Err(Denial::NotParticipant)
        );
    }

    #[test]
    fn managing_needs_a_higher_role() {
        assert!(may_manage(Role::Owner, None, Some(Role::Admin)));
        assert!(may_manage(Role::Owner, Some(Role::Admin), None));
        assert!(may_manage(
            Role::Admin,
            Some(Role::Member),
            Some(Role::Viewer)
        ));
        assert!(!may_manage(Role::Admin, None, Some(Role::Admin)));
        assert!(!may_manage(Role::Admin, Some(Role::Admin), None));
        assert!(!may_manage(
            Role::Owner,
            Some(Role::Owner),
            Some(Role::Admin)
        ));
        assert!(!may_manage(Role::Member, Some(Role::Viewer), None));
    }
}
