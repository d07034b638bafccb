-- One known-standard-error cell per school: the fit's likelihood is Normal(mean | theta, se).
select
    s.school,
    s.y as mean,
    s.sigma as se
from schools as s
