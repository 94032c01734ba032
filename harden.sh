find / -xdev -perm /6000 \( -type f -o -type d \) 2>/dev/null | sed 's/^/SETID /'
ls -A /var/lib/apt/lists /var/cache/apt 2>/dev/null | grep -v '^$' | grep -v ':$' | sed 's/^/APT /'
find / -xdev \( -name ca-bundle.pem -o -path /tmp/build \) 2>/dev/null | sed 's/^/CA /'
stat -c 'PASSWD %a %U:%G %n' /etc/passwd /etc/group
find /opt/jupyter \( -perm /022 ! -type l -o ! -user root \) 2>/dev/null | head -3 | sed 's/^/JUPYTER-WRITABLE /'
find /opt/app-root/venv /opt/app-root/share ! -type l ! -perm -g+w 2>/dev/null | head -3 | sed 's/^/NOT-G=U /'
stat -c 'DIR %a %U:%G %n' /run/nbs2i/ca /opt/app-root/s2i /opt/app-root/src /home/jovyan /opt/app-root/kernels
/opt/jupyter/bin/python -c 'import site,sys; print("SERVER usersite", site.ENABLE_USER_SITE, sys.flags.no_user_site)'
/opt/app-root/venv/bin/python -c 'import site; print("KERNEL usersite", site.ENABLE_USER_SITE)'
test -w /opt/jupyter/lib && echo "JUPYTER lib writable!" || echo "JUPYTER lib not writable"
