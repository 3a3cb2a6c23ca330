//! Matching requested objects to regions, and the relation between two
//! regions.

use super::component::{Component, components};
use super::{FoundObject, colour, match_score, shape};
use crate::world::{Object, Relation};

/// Names the relation of a point at `first` to one at `second` (image
/// coordinates, y down) by the axis along which they lie further apart.
pub fn relation_between(first: (f32, f32), second: (f32, f32)) -> Relation {
    let (dx, dy) = (first.0 - second.0, first.1 - second.1);
    if dx.abs() > dy.abs() {
        if dx < 0.0 {
            Relation::LeftOf
        } else {
            Relation::RightOf
        }
    } else if dy < 0.0 {
        Relation::Above
    } else {
        Relation::Below
    }
}

fn describe(component: &Component) -> FoundObject {
    let features = shape::features(component);
    FoundObject {
        area: component.area,
        centroid: component.centroid,
        features,
        shape: shape::classify(features),
    }
}

/// Finds a region for each object. Objects of different colours each take
/// the largest region of their colour. Two objects of the same colour share
/// its two largest regions, in the assignment that matches more shapes and
/// then more sizes (the first object first on a tie).
pub(super) fn find_objects(
    objects: &[Object],
    labels: &[Option<usize>],
    width: u32,
    height: u32,
    min_area: usize,
) -> Vec<Option<FoundObject>> {
    let pixels = width as f32 * height as f32;
    let mut found: Vec<Option<FoundObject>> = vec![None; objects.len()];
    for (i, object) in objects.iter().enumerate() {
        if found[i].is_some() {
            continue;
        }
        let same: Vec<usize> = (i..objects.len())
            .filter(|&j| objects[j].colour == object.colour)
            .collect();
        let regions: Vec<FoundObject> =
            components(labels, width, height, colour::index_of(object.colour))
                .iter()
                .filter(|c| c.area >= min_area)
                .take(same.len())
                .map(describe)
                .collect();
        let group: Vec<Object> = same.iter().map(|&j| objects[j]).collect();
        for (slot, region) in assign(&group, regions, pixels).into_iter().enumerate() {
            found[same[slot]] = region;
        }
    }
    found
}

/// Assigns up to two regions to one or two objects of the same colour.
fn assign(
    group: &[Object],
    mut regions: Vec<FoundObject>,
    pixels: f32,
) -> Vec<Option<FoundObject>> {
    let score = |objects: &[Object], regions: &[FoundObject]| -> u32 {
        objects
            .iter()
            .zip(regions)
            .map(|(o, r)| match_score(o, r, pixels))
            .sum()
    };
    match (group, regions.len()) {
        ([first, second], 2) => {
            let kept = score(group, &regions);
            let swapped =
                match_score(first, &regions[1], pixels) + match_score(second, &regions[0], pixels);
            if swapped > kept {
                regions.swap(0, 1);
            }
        }
        ([first, second], 1)
            if match_score(second, &regions[0], pixels)
                > match_score(first, &regions[0], pixels) =>
        {
            return vec![None, regions.pop()];
        }
        _ => {}
    }
    let mut out: Vec<Option<FoundObject>> = regions.into_iter().map(Some).collect();
    out.resize(group.len(), None);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_by_dominant_axis() {
        assert_eq!(
            relation_between((10.0, 30.0), (40.0, 35.0)),
            Relation::LeftOf
        );
        assert_eq!(
            relation_between((40.0, 30.0), (10.0, 35.0)),
            Relation::RightOf
        );
        assert_eq!(relation_between((30.0, 5.0), (25.0, 40.0)), Relation::Above);
        assert_eq!(
            relation_between((30.0, 50.0), (35.0, 10.0)),
            Relation::Below
        );
    }
}
